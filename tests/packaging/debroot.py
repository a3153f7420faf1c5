"""Debian roots for the packaging tests: a cached mmdebstrap tarball, chroots that are always
unmounted, and file-list snapshots for "purge leaves nothing" checks.

The base root (Debian 12, --variant=minbase) is built once per suite and architecture into
CACHE_DIR and extracted afresh for each test module, so a rerun costs seconds, not minutes.
Downloaded .debs are kept in CACHE_DIR too and bind-mounted as the chroot's apt archive.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.update_support import Repo, make_repo

CACHE_DIR = Path(os.environ.get("TRUECLOUD_TEST_CACHE", "/var/cache/truecloud-test"))
SUITE = "bookworm"
TOP = Path(__file__).resolve().parents[2]
BUILD_DEB = TOP / "packaging" / "build-deb.sh"

# Left by apt, dpkg and the shadow tools in any root that installs and purges a package; a
# purge is clean when nothing outside these appeared.
SHARED_STATE = (
    "var/lib/dpkg/",
    "var/lib/apt/",
    "var/cache/",
    "var/log/",
    "tmp/",
    "var/tmp/",
    "etc/passwd-",
    "etc/group-",
    "etc/shadow-",
    "etc/gshadow-",
    "etc/.pwd.lock",
    "var/lib/systemd/deb-systemd-helper-enabled",
    "var/lib/systemd/deb-systemd-helper-masked",
)
PSEUDO = ("proc", "sys", "dev", "run")


def run(cmd: Sequence[str | Path], timeout: float = 600, check: bool = True) -> str:
    """Run a host command; its stdout, or an error that shows what it printed."""
    done = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def signed_library(base: Path) -> Repo:
    """A published component library of the tests' own (keys under `base`): the root a test
    build ships, and a repository to update from."""
    return make_repo(base, datetime.now(UTC))


def build_deb(out: Path, release: int = 1, library_root: Path | None = None) -> Path:
    """Build the package with packaging/build-deb.sh; the path of the .deb. It ships
    `library_root`, or the root of a fresh test library made beside `out`."""
    root = library_root or signed_library(out.parent / f"{out.name}-library").trusted_root
    printed = run(
        ["nice", BUILD_DEB, "--out", out, "--release", str(release), "--library-root", root],
        timeout=900,
    )
    deb = Path(printed.strip().splitlines()[-1])
    assert deb.is_file(), f"build-deb.sh printed {printed!r}"
    return deb


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def base_tarball(arch: str = "amd64", suite: str = SUITE) -> Path:
    """The cached minbase root of `suite`, built with mmdebstrap the first time."""
    tar = CACHE_DIR / f"{suite}-minbase-{arch}.tar"
    with _locked(CACHE_DIR / f"{tar.name}.lock"):
        if not tar.exists():
            partial = tar.with_suffix(".partial.tar")
            run(
                ["nice", "mmdebstrap", "--mode=root", "--variant=minbase", "--quiet",
                 f"--architectures={arch}", suite, partial],
                timeout=1800,
            )  # fmt: skip
            partial.rename(tar)
    return tar


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    prefix = str(root.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


@dataclass
class Chroot:
    """A Debian root with /proc, /dev and the apt archive mounted while the context lasts."""

    root: Path
    arch: str = "amd64"

    def sh(self, script: str, timeout: float = 600, check: bool = True) -> str:
        """Run a shell script inside the root as root; its stdout."""
        env = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8",
               "DEBIAN_FRONTEND=noninteractive", "HOME=/root"]  # fmt: skip
        return run(["chroot", self.root, *env, "sh", "-ec", script], timeout, check)

    def rc(self, script: str) -> subprocess.CompletedProcess[str]:
        """Run a script inside the root; the whole result, whatever its exit code."""
        return subprocess.run(
            ["chroot", str(self.root), "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def snapshot(self) -> set[str]:
        """Every path in the root outside the pseudo file systems, relative to it."""
        paths: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = Path(dirpath).relative_to(self.root)
            if rel == Path("."):
                dirnames[:] = [d for d in dirnames if d not in PSEUDO]
            paths.update(str(rel / name) for name in (*dirnames, *filenames))
        return paths


def leftovers(before: set[str], after: set[str]) -> list[str]:
    """Paths that appeared since `before`, leaving out the shared apt/dpkg/shadow state."""
    return sorted(p for p in after - before if not p.startswith(SHARED_STATE))


@contextlib.contextmanager
def chroot(workdir: Path, arch: str = "amd64") -> Iterator[Chroot]:
    """A fresh root from the cached tarball; every mount is undone and the root deleted."""
    root = workdir / "root"
    root.mkdir()
    archives = CACHE_DIR / f"apt-archives-{SUITE}-{arch}"
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    try:
        run(["tar", "-C", root, "-xf", base_tarball(arch)])
        shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
        run(["mount", "-t", "proc", "proc", root / "proc"])
        run(["mount", "--bind", "/dev", root / "dev"])
        run(["mount", "--bind", archives, root / "var" / "cache" / "apt" / "archives"])
        yield Chroot(root, arch)
    finally:
        release(root)


def release(root: Path) -> None:
    """Unmount everything below `root`, then delete it; refuses to delete through a mount."""
    for point in mounts_under(root):
        subprocess.run(["umount", point], check=False, capture_output=True)
    for point in mounts_under(root):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    still = mounts_under(root)
    if still:
        raise AssertionError(f"still mounted, {root} kept: {still}")
    run(["rm", "-rf", "--one-file-system", root])
