"""A zfs-fuse daemon in a mount namespace of its own, for tests and the lab.

zfs-fuse keeps global state (pid file, control socket, lock) under /run and /etc/zfs, so
each daemon needs a private /run and /etc/zfs (PLATFORM.md). `StorageNamespace` makes a
persistent mount namespace bound on a file (`unshare --mount=FILE`), with a fresh tmpfs on
/run (plus /run/lock, where zfs-fuse takes its lock), on /etc/zfs (seeded with the host's
zfsrc) and on /var/lib/zfs (its pool cache). A lab node already is such a namespace; there
`ZfsFuseDaemon` is given the node's `nsenter` prefix instead. The bridges that serve the
pool's devices must mount inside the same namespace: the host's mounts are private, so a
later FUSE mount would not propagate in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cfs.zfs.status import ZfsError
from rms.spawn import spawn_detached

READY_TIMEOUT_S = 15.0
# zfs-fuse also records every pool it holds in /var/lib/zfs/zpool.cache and imports them all
# at start: without a private one there, a pool of one namespace (or of a run that ended
# badly) comes back in the next daemon as an UNAVAIL ghost whose name is taken.
_SETUP = (
    "set -e; mount -n -t tmpfs tmpfs /run; mkdir -p /run/lock /run/zfs-seed; "
    "cp -a /etc/zfs/. /run/zfs-seed/ 2>/dev/null || true; "
    "mount -n -t tmpfs tmpfs /etc/zfs; cp -a /run/zfs-seed/. /etc/zfs/; rm -rf /run/zfs-seed; "
    "mkdir -p /var/lib/zfs; mount -n -t tmpfs tmpfs /var/lib/zfs"
)


async def run(argv: Sequence[str]) -> None:
    """Run a set-up command to completion; ZfsError with its output on failure."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise ZfsError(f"{argv[0]} failed: {out.decode(errors='replace').strip()}")


@dataclass(frozen=True)
class StorageNamespace:
    """A persistent mount namespace bound on `directory/mnt`, with private /run, /etc/zfs."""

    directory: Path

    @property
    def file(self) -> Path:
        """The nsfs file the namespace is bound on."""
        return self.directory / "mnt"

    def enter(self, netns: Path | None = None) -> tuple[str, ...]:
        """The nsenter prefix that runs a command inside (and in netns, if given)."""
        net = () if netns is None else (f"--net={netns}",)
        return ("nsenter", f"--mount={self.file}", *net, "--")

    async def create(self) -> None:
        """Make the namespace: the directory becomes a private bind mount holding the file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        # util-linux binds a namespace only onto a file on a private mount.
        await run(["mount", "--bind", str(self.directory), str(self.directory)])
        await run(["mount", "--make-private", str(self.directory)])
        self.file.touch()
        await run(
            ["unshare", f"--mount={self.file}", "--propagation", "private", "sh", "-c", _SETUP]
        )

    async def remove(self) -> None:
        """Unbind the namespace (it ends with its last process) and the directory mount."""
        for target in (self.file, self.directory):
            with contextlib.suppress(ZfsError):
                await run(["umount", "-l", str(target)])


@dataclass(frozen=True)
class ZfsFuseDaemon:
    """One `zfs-fuse --no-daemon` process, started through `enter`, stopped with SIGKILL."""

    enter: tuple[str, ...]
    log: Path

    async def start(self) -> int:
        """Start zfs-fuse and return its pid once `zpool list` answers."""
        pid = spawn([*self.enter, "zfs-fuse", "--no-daemon"], self.log)
        await self._wait_ready(pid)
        return pid

    async def _wait_ready(self, pid: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        while loop.time() < deadline:
            if _exited(pid):
                raise ZfsError(f"zfs-fuse exited at start: {self.log.read_text()[-400:]}")
            with contextlib.suppress(ZfsError):
                await run([*self.enter, "zpool", "list"])
                return
            await asyncio.sleep(0.2)
        await stop(pid)
        raise ZfsError(f"zfs-fuse did not answer within {READY_TIMEOUT_S} s")


async def stop(pid: int, grace_s: float = 5.0) -> None:
    """SIGTERM zfs-fuse (it unmounts and syncs), SIGKILL after grace_s; wait until gone."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while loop.time() < deadline:
            if _exited(pid):
                return
            await asyncio.sleep(0.05)
    raise ZfsError(f"zfs-fuse {pid} survived SIGKILL")


def spawn(argv: Sequence[str], log: Path) -> int:
    """Start argv detached (rms.spawn), output appended to log; return its pid."""
    try:
        return spawn_detached(argv, log)
    except OSError as e:
        raise ZfsError(f"cannot start {argv[0]}: {e.strerror}; install Debian zfs-fuse") from e


def _exited(pid: int) -> bool:
    """Whether pid is gone (reaping it if it is our child)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return not Path(f"/proc/{pid}").exists()
