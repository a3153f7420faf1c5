"""The narrow iSCSI initiator interface and its userspace backend, `LibiscsiBridge`.

`attach` logs in to one LUN and returns a path the pool can use as a vdev; `detach` undoes
it; `state` reports it. `LibiscsiBridge` runs one bridge process per LUN
(`python -m cfs.initiator.bridge`) that serves the LUN as `<run_dir>/<slug>/mnt/disk`.
Commands may be prefixed by `enter` (e.g. `nsenter --net=/run/netns/NODE --mount=FILE --`)
so the bridge logs in from the node's network and mounts in the node's mount namespace
(where its zfs-fuse runs). Paths are checked through /proc/<pid>/root, which sees the
bridge's own mount namespace whichever it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cfs.initiator.reads import HUNG_S, Reads

ATTACH_TIMEOUT_S = 20.0
PROBE_BYTES = 4096
STOP_TIMEOUT_S = 5.0


class InitiatorError(Exception):
    """An initiator operation failed; messages never contain a CHAP secret."""


@dataclass(frozen=True)
class VolumeTarget:
    """A remote LUN and how to log in to it; the secret is never part of repr()."""

    portal: str
    iqn: str
    lun: int
    chap_user: str
    chap_secret: str

    def __repr__(self) -> str:
        return f"VolumeTarget(portal={self.portal!r}, iqn={self.iqn!r}, lun={self.lun})"

    @property
    def slug(self) -> str:
        """A file-name-safe name unique per (iqn, lun)."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", f"{self.iqn}-lun{self.lun}")


@dataclass(frozen=True)
class AttachState:
    """Whether a LUN is attached, where, and whether its session is healthy."""

    attached: bool
    path: Path | None = None
    healthy: bool = False
    detail: str = ""


class InitiatorDriver(Protocol):
    """One initiator backend."""

    @property
    def kind(self) -> str:
        """`libiscsi`, `open-iscsi` or `fake`."""
        ...

    async def attach(self, target: VolumeTarget) -> Path:
        """Log in and return a block-device-like path for the LUN."""
        ...

    async def detach(self, target: VolumeTarget) -> bool:
        """Log out and remove the path; False when it was not attached."""
        ...

    async def state(self, target: VolumeTarget) -> AttachState:
        """The LUN's attachment as seen now."""
        ...

    async def probe(self, target: VolumeTarget) -> bool:
        """Read one block of the LUN now: whether the volume still answers (an idle pool
        sends it nothing, so a dead provider would go unnoticed until the next write)."""
        ...


class LibiscsiBridge:
    """Userspace initiator: one libiscsi-to-FUSE bridge process per LUN."""

    kind = "libiscsi"

    def __init__(
        self, run_dir: Path, initiator_iqn: str, enter: Sequence[str] = (), timeout_s: int = 5
    ) -> None:
        self.run_dir, self.initiator_iqn = run_dir, initiator_iqn
        self.enter, self.timeout_s = tuple(enter), timeout_s
        self.reads = Reads()  # a bridge silent for a minute is hung (cfs/initiator/reads.py)

    def _dir(self, t: VolumeTarget) -> Path:
        return self.run_dir / t.slug

    def _argv(self, t: VolumeTarget) -> list[str]:
        argv = [*self.enter, sys.executable, "-m", "cfs.initiator.bridge", "--portal", t.portal]
        argv += ["--iqn", t.iqn, "--lun", str(t.lun), "--initiator-iqn", self.initiator_iqn]
        argv += ["--mountpoint", str(self._dir(t) / "mnt"), "--timeout", str(self.timeout_s)]
        return [*argv, "--chap-user", t.chap_user]

    async def attach(self, target: VolumeTarget) -> Path:
        """Start the bridge (unless it runs) and wait until its file is there."""
        current = await self.state(target)
        if current.attached and current.path is not None:
            return current.path
        base = self._dir(target)
        (base / "mnt").mkdir(parents=True, exist_ok=True)
        pid = spawn_with_secret(self._argv(target), base / "bridge.log", target.chap_secret)
        (base / "pid").write_text(f"{pid}\n")
        return await self._wait_attached(target, pid)

    async def _wait_attached(self, target: VolumeTarget, pid: int) -> Path:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ATTACH_TIMEOUT_S
        disk = self._dir(target) / "mnt" / "disk"
        while loop.time() < deadline:
            if (code := reap(pid)) is not None:
                raise InitiatorError(
                    f"attaching {target.iqn} failed (exit {code}): {self._tail(target)}"
                )
            if await asyncio.to_thread(Path(f"/proc/{pid}/root{disk}").exists):
                return disk
            await asyncio.sleep(0.05)
        await self.detach(target)
        raise InitiatorError(f"attaching {target.iqn} timed out after {ATTACH_TIMEOUT_S} s")

    def _tail(self, t: VolumeTarget) -> str:
        text = (self._dir(t) / "bridge.log").read_text(errors="replace").strip()
        return text.splitlines()[-1] if text else "no output"

    def _pid(self, t: VolumeTarget) -> int | None:
        try:
            pid = int((self._dir(t) / "pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if reap(pid) is None and Path(f"/proc/{pid}").exists() else None

    async def detach(self, target: VolumeTarget) -> bool:
        """SIGTERM the bridge (it unmounts and logs out); SIGKILL and lazy-unmount if stuck."""
        pid = self._pid(target)
        mnt = self._dir(target) / "mnt"
        if pid is None:
            (self._dir(target) / "pid").unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not await wait_gone(pid, STOP_TIMEOUT_S):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            await wait_gone(pid, STOP_TIMEOUT_S)
        await lazy_unmount(mnt, self.enter)
        (self._dir(target) / "pid").unlink(missing_ok=True)
        self.reads.forget(target.slug + "/")
        return True

    async def state(self, target: VolumeTarget) -> AttachState:
        """Attached while the bridge lives; healthy while its `state` file says ok."""
        pid = self._pid(target)
        if pid is None:
            return AttachState(False)
        mnt = Path(f"/proc/{pid}/root{self._dir(target) / 'mnt'}")
        path, key = self._dir(target) / "mnt" / "disk", target.slug + "/state"
        try:
            text = await self.reads.read(key, (mnt / "state").read_text, self.timeout_s + 2.0)
        except OSError as e:
            return AttachState(True, None, False, f"bridge not serving: {e.strerror}")
        if text is None:
            # the bridge serves one request at a time: slow behind the pool's own I/O is
            # not dead (its session answers EIO within its own timeout when it is); silent
            # for a minute is hung, and a reattach replaces it
            if self.reads.hung(key):
                return AttachState(True, path, False, f"bridge hung ({HUNG_S:.0f} s silent)")
            return AttachState(True, path, True, "state slow to read")
        return AttachState(True, path, text.strip() == "ok", text.strip())

    async def probe(self, target: VolumeTarget) -> bool:
        """Read one block through the bridge (its first error breaks the session for good)."""
        pid = self._pid(target)
        if pid is None:
            return False
        disk = Path(f"/proc/{pid}/root{self._dir(target) / 'mnt' / 'disk'}")
        key = target.slug + "/disk"
        try:
            ok = await self.reads.read(key, lambda: read_block(disk), self.timeout_s + 2.0)
        except OSError:
            return False
        return not self.reads.hung(key) if ok is None else ok


def read_block(path: Path) -> bool:
    """Whether 4 KiB at offset 0 of path read whole (OSError when they fail)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return len(os.pread(fd, PROBE_BYTES, 0)) == PROBE_BYTES
    finally:
        os.close(fd)


async def probe_path(path: Path, timeout_s: float) -> bool:
    """False when 4 KiB at offset 0 of path fail to read (EIO); a slow read is not a failure."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(read_block, path), timeout_s)
    except OSError:
        return False
    except TimeoutError:
        # Slow is not dead: under load a read may queue behind the pool's own I/O; the
        # bridge answers a dead target with EIO within its own timeout.
        return True


def spawn_with_secret(argv: Sequence[str], log: Path, secret: str) -> int:
    """Start argv in its own session with secret on its stdin (never argv or environ)."""
    read_end, write_end = os.pipe()
    actions = [
        (os.POSIX_SPAWN_DUP2, read_end, 0),
        (os.POSIX_SPAWN_CLOSE, write_end),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        pid = os.posix_spawnp(
            argv[0], list(argv), dict(os.environ), file_actions=actions, setsid=True
        )
    except OSError as e:
        raise InitiatorError(f"cannot start the bridge: {e.strerror}") from e
    finally:
        os.close(read_end)
    with os.fdopen(write_end, "w") as pipe:
        pipe.write(secret + "\n")
    return pid


def reap(pid: int) -> int | None:
    """Our child's exit code once it exited (reaping it); None while it runs."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None if Path(f"/proc/{pid}").exists() else -1
    return os.waitstatus_to_exitcode(status) if done else None


def alive(pid: int) -> bool:
    """Whether /proc still lists pid."""
    return Path(f"/proc/{pid}").exists()


async def wait_gone(pid: int, timeout_s: float) -> bool:
    """Wait up to timeout_s for pid to exit; whether it did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if reap(pid) is not None or not alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def lazy_unmount(mnt: Path, enter: Sequence[str]) -> None:
    """Detach a FUSE mount a killed bridge left behind (ENOTCONN), if any; quiet otherwise."""
    proc = await asyncio.create_subprocess_exec(
        *enter, "umount", "-l", str(mnt),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await proc.wait()
