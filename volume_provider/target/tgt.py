"""The tgt backend: a tgtd of our own per namespace, driven through tgtadm.

`TgtDaemon` runs `tgtd -f` (foreground, so the pid we spawn is the daemon) with its own
control port (`-C N`; tgtd's socket is /run/tgtd/socket.N, so two daemons in one mount
namespace need distinct ports) and one portal (`--iscsi portal=ADDR:PORT`). tgtd ignores
SIGTERM (PLATFORM.md), so it is stopped with SIGKILL. Every command may be prefixed by
`enter` (e.g. `nsenter --net=/run/netns/NODE --`) to run inside a node.

CHAP secrets reach tgtadm only as the `--password` argument of `--op new --mode account`:
tgtadm has no other way in. They never reach our logs or errors (`TargetError` masks them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rms.spawn import spawn_detached
from volume_provider.target.changes import (
    AllowInitiator,
    BindAccount,
    CreateTarget,
    DenyInitiator,
    RemoveTarget,
    TargetChange,
    UnbindAccount,
)
from volume_provider.target.model import LUN, Portal, TargetConfig, TargetError, TargetState
from volume_provider.target.tgtadm import parse_show

READY_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Tgtadm:
    """tgtadm against one tgtd (control port), optionally inside a namespace."""

    control_port: int
    enter: tuple[str, ...] = ()
    tgtadm: str = "tgtadm"

    async def run(self, *args: str, secret: str = "") -> str:
        """Run one tgtadm command; its stdout, or TargetError (with the secret masked)."""
        argv = [*self.enter, self.tgtadm, "-C", str(self.control_port), "--lld", "iscsi", *args]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        except OSError as e:
            raise TargetError(f"cannot run {self.tgtadm}: {e.strerror}; install Debian tgt") from e
        try:
            out, err = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TargetError(f"tgtadm {_what(args)} timed out") from None
        if proc.returncode != 0:
            reason = err.decode(errors="replace").strip() or f"exit {proc.returncode}"
            raise TargetError(f"tgtadm {_what(args)} failed: {reason}", secret)
        return out.decode(errors="replace")


def _what(args: Sequence[str]) -> str:
    """`--op X --mode Y` of an argv: what a message may name (never a password)."""
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    return f"{pairs.get('--op', '?')} {pairs.get('--mode', '?')}"


@dataclass(frozen=True)
class TgtDaemon:
    """One tgtd process: start it, wait until tgtadm answers, SIGKILL it."""

    portal: Portal
    control_port: int
    log: Path
    enter: tuple[str, ...] = ()
    tgtd: str = "/usr/sbin/tgtd"

    def argv(self) -> list[str]:
        """The command line that starts this tgtd."""
        portal = f"portal={self.portal}"
        return [*self.enter, self.tgtd, "-f", "-C", str(self.control_port), "--iscsi", portal]

    async def start(self) -> int:
        """Start tgtd and return its pid once it answers; TargetError if it dies first."""
        pid = spawn(self.argv(), self.log)
        await self._wait_ready(pid)
        return pid

    async def _wait_ready(self, pid: int) -> None:
        tgtadm = Tgtadm(self.control_port, self.enter)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        while loop.time() < deadline:
            if (code := reap(pid)) is not None:
                tail = self.log.read_text(errors="replace")[-500:]
                raise TargetError(f"tgtd exited with {code} at start: {tail}")
            with contextlib.suppress(TargetError):
                await tgtadm.run("--op", "show", "--mode", "target")
                return
            await asyncio.sleep(0.1)
        await kill(pid)
        raise TargetError(f"tgtd on {self.portal} did not answer within {READY_TIMEOUT_S} s")


def spawn(argv: Sequence[str], log: Path) -> int:
    """Start argv detached (rms.spawn), output appended to log; return its pid."""
    try:
        return spawn_detached(argv, log)
    except OSError as e:
        raise TargetError(f"cannot start {argv[0]}: {e.strerror}; install Debian tgt") from e


def reap(pid: int) -> int | None:
    """The exit code of our child pid once it has exited (reaping it); None while it runs."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None if Path(f"/proc/{pid}").exists() else -1
    return os.waitstatus_to_exitcode(status) if done else None


async def kill(pid: int) -> None:
    """SIGKILL a tgtd (it ignores SIGTERM) and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if reap(pid) is not None:
            return
        await asyncio.sleep(0.05)
    raise TargetError(f"tgtd {pid} survived SIGKILL")


class TgtDriver:
    """The `TargetDriver` over one running tgtd; applies changes, decides nothing."""

    kind = "tgt"

    def __init__(self, portal: Portal | None, control_port: int, enter: Sequence[str] = ()) -> None:
        # portal None: each target brings its own portal, which the caller adds and removes
        # with `add_portal` / `remove_portal` (the Volume Provider: one per nested VPN).
        self.portal = portal
        self.adm = Tgtadm(control_port, tuple(enter))

    async def add_portal(self, portal: Portal) -> None:
        """Make tgtd listen on one more portal (idempotent)."""
        if str(portal) not in await self.portals():
            await self.adm.run("--op", "new", "--mode", "portal", "--param", f"portal={portal}")

    async def remove_portal(self, portal: Portal) -> None:
        """Stop listening on a portal added with `add_portal` (idempotent)."""
        if str(portal) in await self.portals():
            await self.adm.run("--op", "delete", "--mode", "portal", "--param", f"portal={portal}")

    async def portals(self) -> set[str]:
        """The portals tgtd listens on, as `[addr]:port` / `addr:port`."""
        text = await self.adm.run("--op", "show", "--mode", "portal")
        found = (
            line.split("Portal:", 1)[1].strip() for line in text.splitlines() if "Portal:" in line
        )
        return {p.rsplit(",", 1)[0] for p in found}

    async def targets(self) -> list[TargetState]:
        """Every target this tgtd exports."""
        return parse_show(await self.adm.run("--op", "show", "--mode", "target"))

    async def apply(self, changes: Sequence[TargetChange]) -> None:
        """Apply the changes in order; stop at the first failure."""
        for change in changes:
            await self._apply(change)

    async def _apply(self, change: TargetChange) -> None:
        match change:
            case CreateTarget(config):
                await self._create(config)
            case RemoveTarget(_, tid, accounts):
                await self.adm.run(
                    "--op", "delete", "--mode", "target", "--tid", str(tid), "--force"
                )
                for user in accounts:
                    await self.adm.run("--op", "delete", "--mode", "account", "--user", user)
            case BindAccount(tid, user, secret):
                await self._bind_account(tid, user, secret.reveal())
            case UnbindAccount(tid, user):
                await self.adm.run(
                    "--op", "unbind", "--mode", "account", "--tid", str(tid), "--user", user
                )
            case AllowInitiator(tid, address):
                await self.adm.run(
                    "--op", "bind", "--mode", "target", "--tid", str(tid), "-I", address
                )
            case DenyInitiator(tid, address):
                await self.adm.run(
                    "--op", "unbind", "--mode", "target", "--tid", str(tid), "-I", address
                )

    async def _create(self, c: TargetConfig) -> None:
        if self.portal is not None and c.portal != self.portal:
            raise TargetError(
                f"target {c.iqn} wants portal {c.portal}; this tgtd serves {self.portal}"
            )
        ensure_backing(Path(c.backing), c.size)
        tid = str(c.tid)
        await self.adm.run("--op", "new", "--mode", "target", "--tid", tid, "-T", c.iqn)
        try:
            await self.adm.run(
                "--op",
                "new",
                "--mode",
                "logicalunit",
                "--tid",
                tid,
                "--lun",
                str(LUN),
                "-b",
                c.backing,
            )
            await self._bind_account(c.tid, c.chap_user, c.chap_secret.reveal())
            await self.adm.run(
                "--op", "bind", "--mode", "target", "--tid", tid, "-I", c.initiator_address
            )
        except TargetError:
            # A half-made target would accept logins without CHAP or ACL: take it away.
            await self.adm.run("--op", "delete", "--mode", "target", "--tid", tid, "--force")
            raise

    async def _bind_account(self, tid: int, user: str, secret: str) -> None:
        accounts = await self.adm.run("--op", "show", "--mode", "account")
        if user not in {line.strip() for line in accounts.splitlines()[1:]}:
            args = ("--op", "new", "--mode", "account", "--user", user, "--password", secret)
            await self.adm.run(*args, secret=secret)
        await self.adm.run("--op", "bind", "--mode", "account", "--tid", str(tid), "--user", user)


def ensure_backing(path: Path, size: int) -> None:
    """Create path as a sparse file of size bytes; TargetConflict if it exists otherwise."""
    try:
        with path.open("xb") as f:
            f.truncate(size)
        return
    except FileExistsError:
        pass
    except OSError as e:
        raise TargetError(f"cannot create backing file {path}: {e.strerror}") from e
    if path.stat().st_size != size:
        raise TargetError(f"backing file {path} exists with another size; it was left as is")
