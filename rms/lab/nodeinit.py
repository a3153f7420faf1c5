"""Run once inside a new node mount namespace: give the node its own /run, /etc and state.

`python -m rms.lab.nodeinit STATE_DIR` is started by `unshare --mount=FILE --propagation
private` inside the node's network namespace. After it, every default path works in the
node with no flags (PLATFORM.md: wireguard-go's UAPI sockets and zfs-fuse's and tgtd's
control sockets under /run collide between nodes otherwise):

- /run: a fresh tmpfs. The host's mounts below /run are detached first, because the copies
  of other namespaces' files (/run/netns/*) would otherwise keep those namespaces alive.
- /etc/zfs: a tmpfs seeded with the host's files (zfsrc), so pools are per node.
- /var/lib/zfs: an empty tmpfs, zfs-fuse's pool cache (every pool in it is imported at start).
- /etc/rms: an empty tmpfs, so the host's config never leaks into a node.
- /var/lib/rms: the node's state directory on the host, bind-mounted.
- /sys: a sysfs of the node's network namespace, as `ip netns exec` does.
- /etc/hosts: the lab's hosts file when one is given (the discovery name, every host).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from rms.lab.mounts import read_mount_points, under
from rms.lab.system import LabError, run_tool

RUN = Path("/run")
ETC_ZFS = Path("/etc/zfs")
VAR_LIB_ZFS = Path("/var/lib/zfs")
ETC_RMS = Path("/etc/rms")
VAR_LIB_RMS = Path("/var/lib/rms")
SYS = Path("/sys")
ETC_HOSTS = Path("/etc/hosts")
MAX_SEED_BYTES = 1 << 20
# What a node sees differently from the host; everything else is the host's tree.
PRIVATE_PATHS = (RUN, ETC_ZFS, VAR_LIB_ZFS, ETC_RMS, VAR_LIB_RMS, SYS, ETC_HOSTS)


def mount(*args: str) -> None:
    """Call mount(8) without touching the host's /run/mount/utab."""
    run_tool(["mount", "-n", *args])


def detach(point: Path) -> None:
    """Lazily unmount a point in this namespace only."""
    run_tool(["umount", "-n", "--lazy", str(point)])


def fresh_run() -> None:
    """Replace everything at and below /run by one empty tmpfs."""
    for point in under(read_mount_points(), [RUN]):
        detach(point)
    mount("-t", "tmpfs", "-o", "mode=0755,size=64m,nosuid,nodev", "tmpfs", str(RUN))
    (RUN / "lock").mkdir(mode=0o1777)
    (RUN / "lock").chmod(0o1777)


def seeded_tmpfs(path: Path) -> None:
    """Mount a tmpfs on path holding a copy of the regular files that were there."""
    seed = {f.name: f.read_bytes() for f in path.iterdir() if f.is_file()}
    if sum(len(b) for b in seed.values()) > MAX_SEED_BYTES:
        raise LabError(f"{path} holds more than {MAX_SEED_BYTES} bytes; refusing to copy it")
    mount("-t", "tmpfs", "-o", "mode=0755,size=16m", "tmpfs", str(path))
    for name, data in seed.items():
        (path / name).write_bytes(data)


def bind_state(state_dir: Path) -> None:
    """Show the node's host-side state directory as /var/lib/rms."""
    # The mount point is created on the host's disk if missing: a bind needs one.
    VAR_LIB_RMS.mkdir(parents=True, exist_ok=True)
    mount("--bind", str(state_dir), str(VAR_LIB_RMS))


def fresh_sys() -> None:
    """Mount a sysfs that shows this network namespace's interfaces."""
    detach(SYS)
    mount("-t", "sysfs", "-o", "nosuid,nodev,noexec", "sysfs", str(SYS))


def setup(state_dir: Path, hosts: Path | None = None) -> None:
    """Give the namespace this process runs in the node's private mounts."""
    if hosts is not None:
        # First, while the host's /run (where the file lives) is still visible here. A file
        # bind: only this namespace sees the lab's names; the host's file is untouched.
        mount("--bind", "-o", "ro", str(hosts), str(ETC_HOSTS))
    fresh_run()
    if ETC_ZFS.is_dir():
        seeded_tmpfs(ETC_ZFS)
    VAR_LIB_ZFS.mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", "mode=0755,size=16m", "tmpfs", str(VAR_LIB_ZFS))
    if ETC_RMS.is_dir():
        mount("-t", "tmpfs", "-o", "mode=0755,size=1m", "tmpfs", str(ETC_RMS))
    bind_state(state_dir)
    fresh_sys()


def main(argv: Sequence[str]) -> int:
    """Entry point; prints what failed and exits 1 on failure."""
    if len(argv) not in (1, 2) or not all(Path(a).is_absolute() for a in argv):
        print("usage: python -m rms.lab.nodeinit /STATE/DIR [/HOSTS/FILE]", file=sys.stderr)
        return 2
    try:
        setup(Path(argv[0]), Path(argv[1]) if len(argv) == 2 else None)
    except (LabError, OSError) as e:
        print(f"rms.lab.nodeinit: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
