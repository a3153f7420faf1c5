"""Parsing `zpool status POOL` into a `PoolStatus`, for zfs-fuse 0.7 and OpenZFS alike.

The parts read are common to both: `  pool:`/` state:` header lines, the `scrub:`
(zfs-fuse) or `scan:` (OpenZFS) line, the `config:` table (NAME STATE READ WRITE CKSUM, then
one row per vdev, nesting shown by indentation) and the `errors:` line. Continuation lines
of `status:`/`action:` are skipped. Malformed text raises `ZfsError` naming the line, never
an IndexError or a half-filled result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

POOL_STATES = frozenset(
    {"ONLINE", "DEGRADED", "FAULTED", "OFFLINE", "UNAVAIL", "REMOVED", "SUSPENDED", "AVAIL"}
)
_SCAN_PROGRESS = re.compile(r"(\d+(?:\.\d+)?)% done")
_COUNTER = re.compile(r"^\d+(\.\d+)?[KMGTP]?$")


class ZfsError(Exception):
    """A zpool/zfs command failed or printed something we cannot read."""


class ZfsTimeout(ZfsError):
    """A zpool/zfs command was cut at its time bound (the daemon may still carry it out)."""


@dataclass(frozen=True)
class VdevStatus:
    """One row of the config table: a pool, a raidz group or a leaf device."""

    name: str
    state: str
    read_errors: str
    write_errors: str
    checksum_errors: str
    depth: int
    note: str = ""

    @property
    def healthy(self) -> bool:
        """ONLINE with no error counted."""
        counts = (self.read_errors, self.write_errors, self.checksum_errors)
        return self.state == "ONLINE" and all(c == "0" for c in counts)


@dataclass(frozen=True)
class ScanStatus:
    """The scrub/resilver line: what runs or ran, and how far along it is."""

    text: str
    kind: str  # "resilver", "scrub" or "none"
    in_progress: bool
    percent: float | None


@dataclass(frozen=True)
class PoolStatus:
    """A pool as `zpool status` reports it."""

    name: str
    state: str
    vdevs: tuple[VdevStatus, ...]
    scan: ScanStatus
    errors: str

    @property
    def leaves(self) -> tuple[VdevStatus, ...]:
        """The devices (rows with no deeper row under them), in table order."""
        rows = self.vdevs
        return tuple(
            v for i, v in enumerate(rows) if i + 1 == len(rows) or rows[i + 1].depth <= v.depth
        )

    def device(self, name: str) -> VdevStatus | None:
        """The row of a device by its path or name."""
        return next((v for v in self.vdevs if v.name == name), None)


def parse_status(text: str) -> PoolStatus:
    """One pool's `zpool status` text as a PoolStatus; ZfsError if it is not one."""
    header, table, errors = _split(text)
    name, state = header.get("pool"), header.get("state")
    if not name or not state:
        raise ZfsError("zpool status output has no 'pool:' and 'state:' lines")
    if state not in POOL_STATES:
        raise ZfsError(f"zpool status: unknown pool state {state!r}")
    vdevs = tuple(_rows(table))
    if not vdevs or vdevs[0].name != name:
        raise ZfsError(f"zpool status: the config table does not start with pool {name!r}")
    scan = parse_scan(header.get("scan") or header.get("scrub") or "none requested")
    return PoolStatus(name, state, vdevs, scan, errors)


def _split(text: str) -> tuple[dict[str, str], list[tuple[int, str]], str]:
    """Header fields, the table rows (line number, text) and the errors line."""
    header: dict[str, str] = {}
    table: list[tuple[int, str]] = []
    errors, in_table = "", False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        key, sep, value = stripped.partition(":")
        if not in_table and sep and key in ("pool", "state", "scan", "scrub", "status", "action"):
            header[key] = value.strip()
        elif stripped == "config:":
            in_table = True
        elif key == "errors" and sep:
            errors, in_table = value.strip(), False
        elif in_table and stripped and not stripped.startswith("NAME "):
            table.append((number, line))
    return header, table, errors


def _rows(table: list[tuple[int, str]]) -> list[VdevStatus]:
    rows = []
    for number, line in table:
        fields = line.split()
        if len(fields) < 5 or not all(_COUNTER.match(c) for c in fields[2:5]):
            raise ZfsError(f"zpool status line {number}: cannot read vdev row {line.strip()!r}")
        indent = len(line.expandtabs(8)) - len(line.expandtabs(8).lstrip())
        name, state, r, w, c = fields[:5]
        rows.append(VdevStatus(name, state, r, w, c, indent, " ".join(fields[5:])))
    base = min((v.depth for v in rows), default=0)
    # Depth in levels: zpool indents each level by two spaces.
    return [VdevStatus(*_fields(v), depth=(v.depth - base) // 2, note=v.note) for v in rows]


def _fields(v: VdevStatus) -> tuple[str, str, str, str, str]:
    return (v.name, v.state, v.read_errors, v.write_errors, v.checksum_errors)


def parse_scan(text: str) -> ScanStatus:
    """The scrub/scan line's kind, whether it runs and its percentage if it says one."""
    lowered = text.lower()
    kind = "resilver" if "resilver" in lowered else "scrub" if "scrub" in lowered else "none"
    running = "in progress" in lowered
    found = _SCAN_PROGRESS.search(text)
    return ScanStatus(text, kind, running, float(found[1]) if found else None)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)([KMGTPE]?)")


def parse_bytes(text: str) -> int:
    """A zpool size column (`1.98G`, `512K`, `0`, or exact bytes) as bytes; ZfsError if not."""
    found = _SIZE.fullmatch(text.strip())
    if found is None:
        raise ZfsError(f"zpool: {text!r} is not a size")
    return int(float(found[1]) * 1024 ** " KMGTPE".index(found[2] or " "))
