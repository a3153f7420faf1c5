"""The provider's lease file: saved after every change, restored at start (docs/volumes.md).

Written atomically (a temporary file in the same directory, fsync, rename, fsync of the
directory) with mode 0600: it holds the leases' CHAP secrets and nested-VPN keys. A file
that is not a lease file at all is renamed aside (`.bad`, kept for the operator) and the
provider starts with no leases; a record that does not conform is dropped. Either way the
volume files no lease owns are then wiped as leftovers.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from rms.atomicfile import write_atomic
from rms.volumes import Lease
from rms.volumes.records import pack_leases, unpack_leases

__all__ = ["MAX_FILE_BYTES", "LeaseFile"]

MAX_FILE_BYTES = 16 * 1024 * 1024

log = structlog.get_logger("volume_provider.leases")


class LeaseFile:
    """One lease file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[Lease]:
        """The saved leases; [] when there is no usable file (a bad one is put aside)."""
        try:
            with self.path.open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return []
        result = unpack_leases(data) if len(data) <= MAX_FILE_BYTES else None
        if result is None:
            aside = self.path.with_name(self.path.name + ".bad")
            self.path.replace(aside)
            log.error("leases.unreadable", kept_as=str(aside))
            return []
        leases, dropped = result
        if dropped:
            log.warning("leases.records_dropped", dropped=dropped, kept=len(leases))
        return leases

    def save(self, leases: list[Lease]) -> None:
        """Replace the file with these leases, atomically."""
        write_atomic(self.path, pack_leases(leases), mode=0o600, dir_mode=0o700)
