"""Tear a lab down, whatever state it was left in; find what a killed run left behind.

Everything is found from names and namespace identities, never from the state file alone:
network namespaces by the "<lab>-" prefix, mount namespaces by the files in the lab's mnt
directory, processes by their /proc/<pid>/ns links, mounts by /proc/self/mountinfo. Order
matters: processes first (while their namespaces can still be recognised), then mounts
(which frees the mount namespaces), then the network namespaces (which removes the veths
and the bridge), then the directories. Each step runs even if an earlier one failed, and
running it all twice is harmless.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rms.lab.layout import LabPaths
from rms.lab.mounts import MountDriver, read_mount_points, under
from rms.lab.netns import NetnsDriver
from rms.lab.procs import NsId, nsfs_id, pids_in, stop_all
from rms.lab.system import LabError

# The daemon shuts down in order on SIGTERM; give it this long before SIGKILL.
GRACE_S = 3.0


@dataclass(frozen=True)
class Leftovers:
    """What of a lab exists on the machine right now."""

    netns: tuple[str, ...]
    mounts: tuple[Path, ...]
    dirs: tuple[Path, ...]

    @property
    def empty(self) -> bool:
        """Whether nothing of the lab is left."""
        return not (self.netns or self.mounts or self.dirs)

    def describe(self) -> str:
        """A short count of what is there, for a person."""
        parts = [
            count(len(self.netns), "network namespace", "network namespaces"),
            count(len(self.mounts), "mount", "mounts"),
            count(len(self.dirs), "directory", "directories"),
        ]
        return ", ".join(p for p in parts if not p.startswith("0 ")) or "nothing"


@dataclass(frozen=True)
class Teardown:
    """What a teardown removed and what it could not."""

    processes: int
    mounts: int
    namespaces: int
    dirs: int
    problems: tuple[str, ...]

    def describe(self) -> str:
        """One line for a person."""
        return (
            f"stopped {count(self.processes, 'process', 'processes')}, "
            f"unmounted {count(self.mounts, 'mount', 'mounts')}, "
            f"deleted {count(self.namespaces, 'network namespace', 'network namespaces')}, "
            f"removed {count(self.dirs, 'directory', 'directories')}"
        )


def count(n: int, one: str, many: str) -> str:
    """ "1 mount", "2 mounts"."""
    return f"{n} {one if n == 1 else many}"


def lab_netns(paths: LabPaths, netns: NetnsDriver) -> list[str]:
    """The lab's network namespaces that exist, found by name."""
    return [n for n in netns.list() if paths.owns_netns(n)]


def find_leftovers(paths: LabPaths, netns: NetnsDriver) -> Leftovers:
    """Look for anything of the lab on the machine."""
    mounts = under(read_mount_points(), [paths.run_dir, paths.state_dir])
    dirs = [d for d in (paths.run_dir, paths.state_dir) if d.exists()]
    return Leftovers(tuple(lab_netns(paths, netns)), tuple(mounts), tuple(dirs))


def lab_namespaces(paths: LabPaths, netns: NetnsDriver) -> set[NsId]:
    """Identities of the lab's network and mount namespaces still bound to a file."""
    files = [netns.path(n) for n in lab_netns(paths, netns)]
    if paths.mnt_dir.is_dir():
        files += sorted(paths.mnt_dir.iterdir())
    return {i for i in (nsfs_id(f) for f in files) if i is not None}


def teardown(
    paths: LabPaths,
    netns: NetnsDriver,
    mounts: MountDriver,
    *,
    keep_state: bool = False,
    grace_s: float = GRACE_S,
) -> Teardown:
    """Remove every process, mount, namespace and directory of the lab."""
    problems: list[str] = []
    ids = lab_namespaces(paths, netns)
    procs = _step(problems, lambda: stop_all(lambda: pids_in(ids), grace_s))
    tops = [paths.run_dir] if keep_state else [paths.run_dir, paths.state_dir]
    unmounted = _step(problems, lambda: len(mounts.unmount_all(tops)))
    deleted = _step(problems, lambda: _delete_netns(paths, netns))
    removed = _step(problems, lambda: _remove_dirs(tops))
    return Teardown(procs, unmounted, deleted, removed, tuple(problems))


def _delete_netns(paths: LabPaths, netns: NetnsDriver) -> int:
    names = lab_netns(paths, netns)
    for name in names:
        netns.delete(name)
    return len(names)


def _remove_dirs(dirs: list[Path]) -> int:
    count = 0
    for d in dirs:
        if d.exists():
            try:
                shutil.rmtree(d)
            except OSError as e:
                raise LabError(f"cannot remove {d}: {e.strerror}") from e
            count += 1
    return count


def _step(problems: list[str], action: Callable[[], int]) -> int:
    """Run one teardown step; a failure is noted and the next step still runs."""
    try:
        return action()
    except LabError as e:
        problems.append(str(e))
        return 0
