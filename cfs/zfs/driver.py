"""The narrow ZFS pool interface and `ZfsCli`, its backend over the `zpool` command.

`zpool` is the one interface OpenZFS (real nodes) and zfs-fuse (the lab) share; pyzfs needs
libzfs_core, which zfs-fuse lacks. Commands take a prefix `enter` (e.g. `nsenter
--mount=FILE --`): zfs-fuse keeps its control socket under /run, so the commands must run in
the mount namespace of the daemon they talk to. Pools are made with `failmode=continue`, so
a pool that lost too many devices returns EIO instead of blocking every reader (`wait`, the
default, would hang the CFS with it).

Every command is bounded (`COMMAND_TIMEOUT_S`; `status` and `list`, which the healing loop
runs every poll, `QUERY_TIMEOUT_S`). What zfs-fuse does when a pool waits on a dead device:
the `zpool` client only waits on the daemon's socket, so killing it at the bound returns at
once, but the daemon goes on with the request (a `replace` may still be carried out later)
and meanwhile holds the pool's lock, so other commands on that pool wait too. A command cut
at its bound raises `ZfsTimeout`; `stall` says which command hung and how many in a row, and
is cleared by the next command that answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from cfs.zfs.status import PoolStatus, ZfsError, ZfsTimeout, parse_bytes, parse_status

RAIDZ3_WIDTH = 8
COMMAND_TIMEOUT_S = 60.0
OFFLINE_TIMEOUT_S = 20.0
QUERY_TIMEOUT_S = 20.0
REAP_TIMEOUT_S = 5.0


class PoolDriver(Protocol):
    """One ZFS backend."""

    async def create_raidz3(self, name: str, devices: Sequence[Path], mountpoint: Path) -> None:
        """Create a RAIDZ3 pool over exactly 8 devices, mounted at mountpoint."""
        ...

    async def status(self, name: str) -> PoolStatus:
        """The pool's state, each vdev's state and errors, and scrub/resilver progress."""
        ...

    async def replace(self, name: str, old: str, new: Path) -> None:
        """Replace device old by new; the resilver starts at once."""
        ...

    async def scrub(self, name: str) -> None:
        """Start a scrub."""
        ...

    async def online(self, name: str, device: str) -> None:
        """Bring a device back online (after its volume was attached again)."""
        ...

    async def usage(self, name: str) -> tuple[int, int]:
        """The pool's size and allocated bytes."""
        ...

    async def offline(self, name: str, device: str) -> None:
        """Stop using a device (before replacing it)."""
        ...

    async def detach(self, name: str, device: str) -> None:
        """Take one device out of a replacing pair (or mirror)."""
        ...

    @property
    def stall(self) -> tuple[str, int] | None:
        """The command that last hit its time bound and how many did in a row; None once a
        command answered again."""
        ...

    async def clear(self, name: str) -> None:
        """Clear error counts (and resume a suspended pool if its devices are back)."""
        ...

    async def export(self, name: str) -> None:
        """Export the pool."""
        ...

    async def import_pool(self, name: str, directories: Sequence[Path]) -> None:
        """Import pool name, looking for its devices in directories (after a restart)."""
        ...

    async def destroy(self, name: str) -> None:
        """Destroy the pool."""
        ...

    async def pools(self) -> list[str]:
        """The names of the imported pools."""
        ...


class ZfsCli:
    """PoolDriver over `zpool`, optionally inside another mount namespace."""

    def __init__(self, enter: Sequence[str] = (), zpool: str = "zpool") -> None:
        self.enter, self.zpool = tuple(enter), zpool
        self._stall: tuple[str, int] | None = None

    @property
    def stall(self) -> tuple[str, int] | None:
        """The command that last hit its bound and how many in a row (None: all answer)."""
        return self._stall

    async def run(self, *args: str, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
        """Run `zpool ARGS`; its stdout, or ZfsError with its stderr (ZfsTimeout if cut)."""
        argv = [*self.enter, self.zpool, *args]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        except OSError as e:
            raise ZfsError(
                f"cannot run {self.zpool}: {e.strerror}; install zfsutils or zfs-fuse"
            ) from e
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            proc.kill()
            # the client waits on a socket, so SIGKILL ends it; never wait for ever anyway
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), REAP_TIMEOUT_S)
            count = self._stall[1] + 1 if self._stall else 1
            self._stall = (f"zpool {args[0]}", count)
            raise ZfsTimeout(f"zpool {args[0]} did not finish in {timeout_s:.0f} s") from None
        self._stall = None
        if proc.returncode != 0:
            reason = err.decode(errors="replace").strip() or f"exit {proc.returncode}"
            raise ZfsError(f"zpool {' '.join(args[:2])} failed: {reason}")
        return out.decode(errors="replace")

    async def create_raidz3(self, name: str, devices: Sequence[Path], mountpoint: Path) -> None:
        """Create the pool (failmode=continue, mounted at mountpoint)."""
        if len(devices) != RAIDZ3_WIDTH or len(set(devices)) != RAIDZ3_WIDTH:
            raise ZfsError(
                f"a RAIDZ3 pool takes {RAIDZ3_WIDTH} distinct devices, got {len(devices)}"
            )
        args = ["create", "-o", "failmode=continue", "-m", str(mountpoint), name, "raidz3"]
        try:
            await self.run(*args, *(str(d) for d in devices))
        except ZfsError as e:
            # zfs-fuse under load has answered a create that succeeded with "pool already
            # exists" (it retried its own request); the same pool over the same devices is
            # success, anything else stays an error.
            if "already exists" not in str(e):
                raise
            if not await self._made_of(name, devices):
                seen = await self._describe(name)
                raise ZfsError(f"{e}; what the daemon holds: {seen}") from None

    async def _describe(self, name: str) -> str:
        try:
            status = await self.status(name)
        except ZfsError as e:
            return f"no readable status ({e})"
        return f"{status.state} over {sorted(v.name for v in status.leaves)}"

    async def _made_of(self, name: str, devices: Sequence[Path]) -> bool:
        """Whether pool name exists with exactly these devices as its leaves."""
        try:
            status = await self.status(name)
        except ZfsError:
            return False
        return {v.name for v in status.leaves} == {str(d) for d in devices}

    async def status(self, name: str) -> PoolStatus:
        """Parse `zpool status NAME`."""
        return parse_status(await self.run("status", name, timeout_s=QUERY_TIMEOUT_S))

    async def replace(self, name: str, old: str, new: Path) -> None:
        """`zpool replace NAME OLD NEW`."""
        await self.run("replace", name, old, str(new))

    async def scrub(self, name: str) -> None:
        """`zpool scrub NAME`."""
        await self.run("scrub", name)

    async def online(self, name: str, device: str) -> None:
        """`zpool online NAME DEVICE`."""
        await self.run("online", name, device)

    async def offline(self, name: str, device: str) -> None:
        """`zpool offline NAME DEVICE` (bounded: a pool stuck on I/O must not stall us)."""
        await self.run("offline", name, device, timeout_s=OFFLINE_TIMEOUT_S)

    async def detach(self, name: str, device: str) -> None:
        """`zpool detach NAME DEVICE`."""
        await self.run("detach", name, device)

    async def usage(self, name: str) -> tuple[int, int]:
        """`zpool list -Hp -o size,allocated NAME` (zfs-fuse lacks -p: units are parsed)."""
        out = await self.run("list", "-H", "-o", "size,allocated", name, timeout_s=QUERY_TIMEOUT_S)
        fields = out.split()
        if len(fields) != 2:
            raise ZfsError(f"zpool list: cannot read {out.strip()!r}")
        return parse_bytes(fields[0]), parse_bytes(fields[1])

    async def clear(self, name: str) -> None:
        """`zpool clear NAME`."""
        await self.run("clear", name)

    async def export(self, name: str) -> None:
        """`zpool export -f NAME`."""
        await self.run("export", "-f", name)

    async def import_pool(self, name: str, directories: Sequence[Path]) -> None:
        """`zpool import -d DIR … NAME`; a pool the daemon still holds is already there."""
        if name in await self.pools():
            return
        dirs = [arg for d in directories for arg in ("-d", str(d))]
        await self.run("import", *dirs, name)

    async def destroy(self, name: str) -> None:
        """`zpool destroy -f NAME`."""
        await self.run("destroy", "-f", name)

    async def pools(self) -> list[str]:
        """`zpool list -H -o name`."""
        out = await self.run("list", "-H", "-o", "name")
        return [line.strip() for line in out.splitlines() if line.strip()]
