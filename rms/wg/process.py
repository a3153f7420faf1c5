"""Starting and stopping wireguard-go processes: posix_spawn, pidfd, no polling for exit.

wireguard-go runs in the foreground (`-f`) in its own session, so its pid is the pid that
listens on the UAPI socket and the driver can find it again through SO_PEERCRED, even after
a restart of the process that started it. It is spawned with posix_spawn rather than an
asyncio subprocess: an interface outlives the call that made it (as a kernel interface
would), and an asyncio transport would kill the child when closed or warn when collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from rms.wg.errors import WireGuardError, os_error

# Python ignores or handles these; the daemon gets the defaults back (as the lab does).
_RESET = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
KILL_WAIT_S = 3.0


def spawn(argv: Sequence[str], env: Mapping[str, str], log: Path | None) -> int:
    """Start argv in its own session, stdin from /dev/null, output to log; return the pid."""
    out = os.devnull if log is None else str(log)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        return os.posix_spawn(
            argv[0], list(argv), dict(env), file_actions=actions, setsid=True, setsigdef=_RESET
        )
    except OSError as e:
        raise os_error(f"starting {Path(argv[0]).name}", e) from e


def reap(pid: int) -> int | None:
    """The exit code of our child pid if it has exited (reaping it); None otherwise.

    None too when pid is not our child (adopted after a restart): init reaps those.
    """
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if done else None


def command_name(pid: int) -> str | None:
    """The process's command name (`/proc/PID/comm`), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


async def _exited(pidfd: int, within: float) -> bool:
    """Wait until the process behind pidfd has exited (a pidfd turns readable then)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        async with asyncio.timeout(within):
            await done
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(pidfd)
    return True


def _signal(pidfd: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, sig)


def open_pidfd(pid: int) -> int | None:
    """A pidfd for pid (signals through it never reach a reused pid); None if it is gone."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except OSError as e:
        raise os_error(f"watching process {pid}", e) from e


async def terminate(pidfd: int, grace: float) -> None:
    """SIGTERM the process, SIGKILL it after grace seconds, and wait until it has exited."""
    _signal(pidfd, signal.SIGTERM)
    if await _exited(pidfd, grace):
        return
    _signal(pidfd, signal.SIGKILL)
    if not await _exited(pidfd, KILL_WAIT_S):
        raise WireGuardError("a wireguard-go process survived SIGKILL; it may be stuck")


async def stop(pid: int, grace: float) -> None:
    """Terminate pid (see terminate) and reap it if it is our child."""
    pidfd = open_pidfd(pid)
    if pidfd is not None:
        try:
            await terminate(pidfd, grace)
        finally:
            os.close(pidfd)
    reap(pid)


def log_tail(log: Path | None, lines: int = 3) -> str:
    """The last few meaningful lines of a wireguard-go log, for an error message."""
    if log is None:
        return "no log (give the driver a log_dir to keep wireguard-go's output)"
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return f"no log at {log}"
    # Skip the banner wireguard-go draws in a box about the kernel module.
    kept = [ln.strip() for ln in text.splitlines() if ln.strip() and ln.strip()[0] not in "┌│└"]
    return " | ".join(kept[-lines:]) or f"nothing in {log}"
