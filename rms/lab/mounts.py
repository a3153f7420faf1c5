"""Mount namespaces of the nodes, seen from the host: create them, find and undo the mounts.

A node's mount namespace is persistent: `unshare --mount=FILE` bind-mounts the namespace on
FILE, so it outlives the process that made it and `nsenter --mount=FILE` can join it. util-
linux requires FILE to sit on a mount that is not shared, hence the lab's mnt directory is
bind-mounted on itself and made private first. Inside the new namespace, `rms.lab.nodeinit`
gives the node its own /run, /etc/zfs and /var/lib/rms.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rms.lab.system import LabError, run_tool

MOUNTINFO = Path("/proc/self/mountinfo")


def unescape(field: str) -> str:
    """Undo the octal escapes (\\040 for a space…) of a /proc mountinfo path."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mount_points(mountinfo: str) -> list[Path]:
    """The mount points listed in a /proc/<pid>/mountinfo text, in mount order."""
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(Path(unescape(fields[4])))
    return points


def under(points: Iterable[Path], tops: Iterable[Path]) -> list[Path]:
    """The points at or below any of `tops`, deepest and most recent first, to unmount."""
    chosen = [p for p in points if any(p == t or t in p.parents for t in tops)]
    ordered = sorted(enumerate(chosen), key=lambda ip: (len(ip[1].parts), ip[0]), reverse=True)
    return [p for _, p in ordered]


def read_mount_points(mountinfo: Path = MOUNTINFO) -> list[Path]:
    """The mount points of the calling process's mount namespace."""
    try:
        return parse_mount_points(mountinfo.read_text())
    except OSError as e:
        raise LabError(f"cannot read {mountinfo}: {e.strerror}") from e


@dataclass(frozen=True)
class MountDriver:
    """Make and remove the host-side mounts of a lab with mount, umount and unshare."""

    nsenter: str = "nsenter"
    unshare: str = "unshare"

    def is_mount_point(self, path: Path) -> bool:
        """Whether something is mounted exactly on path."""
        return path in read_mount_points()

    def make_private_dir(self, path: Path) -> None:
        """Create path as a private bind mount of itself, where ns files may be bound."""
        path.mkdir(parents=True, exist_ok=True)
        if not self.is_mount_point(path):
            run_tool(["mount", "--bind", str(path), str(path)])
        run_tool(["mount", "--make-private", str(path)])

    def create_node_namespace(
        self, mnt_file: Path, netns_file: Path, state_dir: Path, hosts: Path | None = None
    ) -> None:
        """Make a node's persistent mount namespace and set up its private mounts."""
        mnt_file.touch(exist_ok=True)
        argv = [self.nsenter, f"--net={netns_file}", "--"]
        argv += [self.unshare, f"--mount={mnt_file}", "--propagation", "private", "--"]
        argv += [sys.executable, "-m", "rms.lab.nodeinit", str(state_dir)]
        argv += [] if hosts is None else [str(hosts)]
        run_tool(argv)

    def unmount_all(self, tops: Iterable[Path]) -> list[Path]:
        """Unmount everything at or below `tops`; return what was unmounted."""
        done = []
        for point in under(read_mount_points(), list(tops)):
            self.unmount(point)
            done.append(point)
        return done

    def unmount(self, point: Path) -> None:
        """Unmount one point, detaching it lazily if it is busy."""
        try:
            run_tool(["umount", str(point)])
        except LabError:
            run_tool(["umount", "--lazy", str(point)])
