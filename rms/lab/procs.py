"""Processes of the lab: start them detached inside a node, find them by namespace, stop them.

Teardown never trusts a pid list alone (the state file may be gone after a kill, a pid may
have been reused): a process belongs to the lab when its /proc/<pid>/ns/net or ns/mnt is one
of the lab's namespaces, compared by (device, inode) of the nsfs file.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from rms.lab.system import LabError
from rms.spawn import spawn_detached as spawn

NsId = tuple[int, int]
PROC = Path("/proc")
POLL_S = 0.05


def ns_id(path: Path) -> NsId | None:
    """The identity of the namespace a nsfs file or /proc/<pid>/ns link names, if any."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def nsfs_id(path: Path) -> NsId | None:
    """Like ns_id, but None unless path really is a bound namespace (not a plain file)."""
    found, probe = ns_id(path), ns_id(Path("/proc/self/ns/net"))
    if found is None or probe is None or found[0] != probe[0]:
        return None
    return found


def pids_in(namespaces: Collection[NsId], proc: Path = PROC) -> list[int]:
    """Every live process (but this one) whose network or mount namespace is listed."""
    if not namespaces:
        return []
    me, found = os.getpid(), []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        if ns_id(entry / "ns" / "net") in namespaces or ns_id(entry / "ns" / "mnt") in namespaces:
            found.append(int(entry.name))
    return sorted(found)


def in_namespace(pid: int, namespace: NsId | None) -> bool:
    """Whether pid is alive (not a zombie) and inside that network namespace."""
    return namespace is not None and ns_id(PROC / str(pid) / "ns" / "net") == namespace


def stop_all(find: Callable[[], list[int]], grace_s: float, kill_wait_s: float = 3.0) -> int:
    """SIGTERM what find() returns, SIGKILL what is left after grace_s; count the pids."""
    seen: set[int] = set()
    deadline = time.monotonic() + grace_s
    while (pids := find()) and time.monotonic() < deadline:
        _signal_new(pids, seen, signal.SIGTERM)
        time.sleep(POLL_S)
    # tgtd ignores SIGTERM (PLATFORM.md); anything still here gets SIGKILL.
    deadline = time.monotonic() + kill_wait_s
    while (pids := find()) and time.monotonic() < deadline:
        seen.update(pids)
        _send(pids, signal.SIGKILL)
        time.sleep(POLL_S)
    if pids:
        raise LabError(f"processes {pids} survived SIGKILL; they may be stuck in the kernel")
    return len(seen)


def _signal_new(pids: Sequence[int], seen: set[int], sig: signal.Signals) -> None:
    """Send sig once to each pid not signalled before."""
    fresh = [p for p in pids if p not in seen]
    seen.update(fresh)
    _send(fresh, sig)


def _send(pids: Sequence[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue


def spawn_detached(argv: Sequence[str], log: Path, env: Mapping[str, str]) -> int:
    """Start argv in its own session, output appended to log, and return its pid."""
    try:
        return spawn(argv, log, env)
    except OSError as e:
        raise LabError(f"cannot start {argv[0]}: {e.strerror}") from e


def exit_status(pid: int) -> int | None:
    """The exit code of our child pid if it has exited (reaping it), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if done else None
