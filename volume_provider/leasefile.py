"""The provider's lease file: saved after every change, restored at start (docs/volumes.md).

Written atomically (a temporary file in the same directory, fsync, rename, fsync of the
directory) with mode 0600: it holds the leases' CHAP secrets and nested-VPN keys. A file
that is not a lease file at all is renamed aside (`.bad`, kept for the operator) and the
provider starts with no leases; a record that does not conform is dropped. Either way the
volume files no lease owns are then wiped as leftovers.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

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
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pack_leases(leases))
            f.flush()
            os.fsync(f.fileno())
        temp.replace(self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
