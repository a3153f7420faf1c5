"""The provider's contributed storage: one sparse file per leased volume in one directory.

A volume is `<data_dir>/<volume id hex>.img`, created sparse at its full size (so an unused
volume costs no disk) and never resized. **Wiping** a volume truncates its file to zero
length — every block is handed back to the file system, so nothing of the old data can be
read through any later file — fsyncs, and removes it. A new volume is always a new file,
created exclusively, so it reads as zeros whatever lived in the directory before.

Leases are saved (volume_provider.leasefile) and restored at start; `wipe_all` then wipes
every volume file in the directory that no restored lease owns (docs/volumes.md, "Restarts").
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Collection
from pathlib import Path

__all__ = ["StoreError", "VolumeStore"]

_NAME = re.compile(r"[0-9a-f]{32}\.img")


class StoreError(Exception):
    """The volume directory cannot be used; the message says what and what to do."""


class VolumeStore:
    """Sparse volume files under one directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def prepare(self) -> None:
        """Create the directory (0700): only root reads volumes."""
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.data_dir.chmod(0o700)
        except OSError as e:
            raise StoreError(f"cannot create volume directory {self.data_dir}: {e.strerror}") from e

    def path(self, volume_id: bytes) -> Path:
        """Where a volume's data lives."""
        if len(volume_id) != 16:
            raise StoreError("a volume id is 16 bytes")
        return self.data_dir / f"{volume_id.hex()}.img"

    def create(self, volume_id: bytes, size: int) -> Path:
        """A new sparse file of `size` bytes for the volume; StoreError if it exists."""
        path = self.path(volume_id)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise StoreError(f"volume file {path.name} exists already; it was left as is") from None
        except OSError as e:
            raise StoreError(f"cannot create volume file {path.name}: {e.strerror}") from e
        try:
            os.ftruncate(fd, size)
        except OSError as e:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise StoreError(f"cannot size volume file {path.name}: {e.strerror}") from e
        os.close(fd)
        return path

    def wipe(self, volume_id: bytes) -> bool:
        """Truncate the volume's file to nothing, sync, remove it; False if there was none."""
        return _wipe(self.path(volume_id))

    def wipe_all(self, keep: Collection[bytes] = ()) -> int:
        """Wipe every volume file in the directory but those of `keep` (leftovers)."""
        if not self.data_dir.is_dir():
            return 0
        kept = {f"{v.hex()}.img" for v in keep}
        found = [p for p in self.data_dir.iterdir() if _NAME.fullmatch(p.name)]
        return sum(_wipe(p) for p in found if p.name not in kept)

    def check(self, volume_id: bytes, size: int) -> Path:
        """The file of a restored volume; StoreError unless it is there with its size."""
        path = self.path(volume_id)
        try:
            actual = path.stat().st_size
        except OSError as e:
            raise StoreError(f"volume file {path.name} is gone: {e.strerror}") from None
        if actual != size:
            raise StoreError(f"volume file {path.name} has {actual} bytes, not {size}")
        return path

    def volumes(self) -> list[str]:
        """The volume ids (hex) that have a file."""
        if not self.data_dir.is_dir():
            return []
        return sorted(p.name[:32] for p in self.data_dir.iterdir() if _NAME.fullmatch(p.name))

    def allocated(self) -> int:
        """Bytes the volume files really occupy on disk (sparse files count what is written)."""
        total = 0
        for name in self.volumes():
            with contextlib.suppress(OSError):
                total += (self.data_dir / f"{name}.img").stat().st_blocks * 512
        return total


def _wipe(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise StoreError(f"cannot open {path.name} to wipe it: {e.strerror}") from e
    try:
        os.ftruncate(fd, 0)
        os.fsync(fd)
    except OSError as e:
        raise StoreError(f"cannot wipe {path.name}: {e.strerror}; it was left in place") from e
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)
    return True
