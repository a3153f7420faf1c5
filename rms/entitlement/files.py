"""Small state files of the entitlement, ledger and audit services: capped reads, atomic writes.

Every file here is read with a size cap (a damaged or planted file cannot make the daemon read
gigabytes) and written through a temporary file, fsync and rename, so a crash leaves either the
old content or the new, never half of each.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

log = structlog.get_logger("rms.state")


def read_capped(path: Path, limit: int) -> bytes | None:
    """At most `limit + 1` bytes of the file (so callers can tell it is too large); None if
    it does not exist or cannot be read."""
    try:
        with path.open("rb") as f:
            return f.read(limit + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("state_file.unreadable", path=str(path), error=e.strerror)
        return None


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace the file's content with `data` in one step."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    temp.replace(path)


def set_aside(path: Path, reason: str) -> None:
    """Move a damaged file to NAME.damaged (kept for the owner to look at) and log why."""
    log.warning("state_file.damaged", path=str(path), reason=reason[:200])
    try:
        path.replace(path.with_name(path.name + ".damaged"))
    except OSError as e:
        log.warning("state_file.set_aside_failed", path=str(path), error=e.strerror)
