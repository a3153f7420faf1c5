"""The `pool` status section the CFS publishes to its RMS (sans-IO: a pure function).

Issue 5, "Visibility": `rms status` shows the pool — state, size, used, each volume's
provider and state, resilver progress — and `--json` has a `pool` object. The CFS sends
this object to `PUT /v1/status/sections/pool`; the RMS shows it as it is. Only ids, paths,
states and numbers go in: never a CHAP secret or a key.
"""

from __future__ import annotations

from typing import Any

from cfs.healing import PARITY, Healer
from cfs.zfs.status import PoolStatus

SECTION = "pool"


def pool_section(
    name: str,
    *,
    status: PoolStatus | None,
    usage: tuple[int, int] | None,
    healer: Healer | None,
    problem: str,
    now: float,
    stall: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """The section as plain JSON values."""
    out: dict[str, Any] = {"name": name, "state": status.state if status else "BUILDING"}
    if usage is not None:
        out["size_bytes"], out["used_bytes"] = usage
    if status is not None:
        out["scan"] = status.scan.text
        out["errors"] = status.errors
    if healer is not None:
        out.update(healer.snapshot(now))
        out["resilver_percent"] = healer.resilver_percent
        if status is not None:
            for volume in out["volumes"]:
                leaf = status.device(str(volume["device"]))
                volume["zfs_state"] = leaf.state if leaf else "MISSING"
    if healer is not None and healer.lost() > PARITY:
        # RAIDZ3 keeps data with 3 volumes gone, not 4: zfs (failmode=continue) answers
        # EIO, never wrong bytes, and the controller waits for the volumes to come back
        out["suspended"] = True
        problem = problem or (
            f"{healer.lost()} of {len(healer.slots)} volumes lost, more than RAIDZ3's "
            f"{PARITY}: reads and writes fail (EIO) until enough return; retrying them"
        )
    if stall is not None:
        command, count = stall
        out["stalled"] = {"command": command, "in_a_row": count}
        problem = problem or (
            f"{command} hit its time bound ({count} in a row): zfs-fuse is waiting on a "
            "dead device; healing retries with back-off"
        )
    if problem:
        out["problem"] = problem
    return out
