"""The `pool` status section the CFS publishes to its RMS (sans-IO: a pure function).

Issue 5, "Visibility": `rms status` shows the pool — state, size, used, each volume's
provider and state, resilver progress — and `--json` has a `pool` object. The CFS sends
this object to `PUT /v1/status/sections/pool`; the RMS shows it as it is. Only ids, paths,
states and numbers go in: never a CHAP secret or a key.
"""

from __future__ import annotations

from typing import Any

from cfs.healing import Healer
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
    if problem:
        out["problem"] = problem
    return out
