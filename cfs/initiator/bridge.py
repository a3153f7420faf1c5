"""The libiscsi bridge process: one iSCSI LUN served as the regular file `disk` on FUSE.

Run as `python -m cfs.initiator.bridge --portal ADDR:PORT --iqn IQN --lun N --initiator-iqn
IQN --mountpoint DIR [--chap-user USER]`; the CHAP secret is read from the first line of
stdin, never from argv or the environment (both are visible in /proc). The mount holds two
files: `disk` (the LUN, opened with direct I/O so nothing is served from a stale page cache)
and `state` (`ok`, or `failed: reason` once the session broke). After the first I/O error
the session is not retried: every later request fails with EIO at once, which is what lets
zfs-fuse mark the vdev UNAVAIL instead of hanging (PLATFORM.md); the CFS replaces the volume.
SIGTERM unmounts (libfuse's own handler) and logs out.
"""

from __future__ import annotations

import argparse
import errno
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import mfusepy

from cfs.initiator.blockio import BlockFile
from cfs.initiator.libiscsi import IscsiError, LoginParams, Session

DISK, STATE = "/disk", "/state"
T = TypeVar("T")


class LunFiles(mfusepy.Operations):  # type: ignore[misc]
    """FUSE operations over one session: `disk` maps to SCSI block I/O, `state` reports."""

    use_ns = True

    def __init__(self, session: Session, disk: BlockFile) -> None:
        self.session, self.disk = session, disk
        self._mutex = threading.Lock()  # a libiscsi context serves one command at a time
        self.failure: str | None = None
        self.started = time.time_ns()

    def _state(self) -> bytes:
        return b"ok\n" if self.failure is None else f"failed: {self.failure}\n".encode()

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        """Attributes of the root, `disk` and `state`."""
        times = {"st_atime": self.started, "st_mtime": self.started, "st_ctime": self.started}
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o700, "st_nlink": 2, **times}
        if path == DISK:
            return {
                "st_mode": stat.S_IFREG | 0o600,
                "st_nlink": 1,
                "st_size": self.disk.size,
                **times,
            }
        if path == STATE:
            return {
                "st_mode": stat.S_IFREG | 0o400,
                "st_nlink": 1,
                "st_size": len(self._state()),
                **times,
            }
        raise mfusepy.FuseOSError(errno.ENOENT)

    def readdir(self, path: str, fh: Any) -> list[str]:
        """The two files."""
        return [".", "..", DISK[1:], STATE[1:]]

    def open(self, path: str, fi: Any) -> int:
        """Open `disk` or `state`, bypassing the page cache."""
        if path not in (DISK, STATE):
            raise mfusepy.FuseOSError(errno.ENOENT)
        fi.direct_io = 1
        return 0

    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        """A LUN has a fixed size: only a no-op truncate to that size succeeds."""
        if path != DISK or length != self.disk.size:
            raise mfusepy.FuseOSError(errno.EINVAL)
        return 0

    def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
        """Read from the LUN (EIO once the session failed) or the state text."""
        if path == STATE:
            return self._state()[offset : offset + size]
        return self._io(lambda: self.disk.read(offset, size))

    def write(self, path: str, data: bytes, offset: int, fh: Any) -> int:
        """Write to the LUN; ENOSPC past its end, EIO once the session failed."""
        if path != DISK:
            raise mfusepy.FuseOSError(errno.EACCES)
        if offset + len(data) > self.disk.size:
            raise mfusepy.FuseOSError(errno.ENOSPC)
        return self._io(lambda: self.disk.write(offset, data))

    def fsync(self, path: str, datasync: int, fh: Any) -> int:
        """Flush the target's cache."""
        self._io(self.session.flush)
        return 0

    def _io(self, op: Callable[[], T]) -> T:
        with self._mutex:
            if self.failure is not None:
                raise mfusepy.FuseOSError(errno.EIO)
            try:
                return op()
            except IscsiError as e:
                self.failure = str(e)
                print(f"bridge: session failed, every request now gets EIO: {e}", file=sys.stderr)
                raise mfusepy.FuseOSError(errno.EIO) from e


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The bridge's command line."""
    p = argparse.ArgumentParser(prog="python -m cfs.initiator.bridge", description=__doc__)
    p.add_argument("--portal", required=True, help="ADDR:PORT ([ADDR]:PORT for IPv6)")
    p.add_argument("--iqn", required=True)
    p.add_argument("--lun", type=int, default=1)
    p.add_argument("--initiator-iqn", required=True)
    p.add_argument("--mountpoint", required=True)
    p.add_argument("--chap-user", help="CHAP user; the secret is read from stdin")
    p.add_argument("--timeout", type=int, default=5, help="seconds one SCSI command may take")
    return p.parse_args(argv)


def login(args: argparse.Namespace) -> Session:
    """Read the secret from stdin (if CHAP) and log in."""
    secret = sys.stdin.readline().rstrip("\n") if args.chap_user else None
    params = LoginParams(
        args.portal, args.iqn, args.lun, args.initiator_iqn, args.chap_user, secret, args.timeout
    )
    session = Session(params)
    try:
        session.login()
    except IscsiError:
        session.close()
        raise
    return session


def main(argv: Sequence[str] | None = None) -> int:
    """Log in, serve the LUN until unmounted or signalled, log out; 1 when login fails."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        session = login(args)
    except IscsiError as e:
        print(f"bridge: {e}", file=sys.stderr)
        return 1
    cap = session.capacity
    print(f"bridge: logged in, {cap.blocks} blocks of {cap.block_size} B", file=sys.stderr)
    ops = LunFiles(session, BlockFile(session, cap.block_size, cap.size))
    try:
        mfusepy.FUSE(
            ops, args.mountpoint, raw_fi=True, foreground=True, nothreads=True, fsname="libiscsi"
        )
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
