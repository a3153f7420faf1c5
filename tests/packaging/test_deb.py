"""The .deb in a fresh Debian 12 root: install with apt, run, verify units, upgrade, purge.

Needs root, mmdebstrap and the Debian registry; the minbase root is cached (debroot.py), so a
rerun takes about a minute. The tests run in file order: the last upgrades and purges.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging.debroot import Chroot, build_deb, chroot, leftovers, run, signed_library
from tests.update_support import Repo

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot and mounts need root"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="scripts/dev.sh installs it"),
]

UNITS = ("rms.service", "vpn-discovery.service", "volume-provider.service", "cfs.service")
CAP_NET_ADMIN = 12


@dataclass
class Installed:
    """The root with the first build installed, the second build, and the pre-install list."""

    box: Chroot
    upgrade: Path
    before: set[str]
    library: Repo  # whose root the package ships


def apt_install(box: Chroot, deb: Path) -> str:
    """Install a .deb with apt inside the root (its dependencies from the Debian registry)."""
    shutil.copy(deb, box.root / "tmp" / deb.name)
    try:
        return box.sh(f"apt-get install -y -q --no-install-recommends /tmp/{deb.name}")
    finally:
        (box.root / "tmp" / deb.name).unlink()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    work = tmp_path_factory.mktemp("deb")
    library = signed_library(work / "library")
    first = build_deb(work / "dist1", release=1, library_root=library.trusted_root)
    second = build_deb(work / "dist2", release=2, library_root=library.trusted_root)
    depends = run(["dpkg-deb", "-f", first, "Depends"]).strip()
    with chroot(work) as box:
        box.sh("apt-get update -q", timeout=300)
        # The dependencies and systemd (for systemd-analyze) first: the snapshot taken then is
        # what a purge must return to.
        box.sh(f"apt-get satisfy -y -q --no-install-recommends '{depends}, systemd'", timeout=900)
        before = box.snapshot()
        apt_install(box, first)
        yield Installed(box, second, before, library)


def test_the_package_is_installed_with_its_version(installed: Installed) -> None:
    status = installed.box.sh("dpkg-query -W -f='${Status} ${Version}' truecloud")
    assert status == "install ok installed 0.1.0-1"


def test_rms_version_works(installed: Installed) -> None:
    assert installed.box.sh("rms --version").strip() == "rms 0.1.0"
    for tool in ("vpn-discovery", "volume-provider", "cfs"):
        assert installed.box.sh(f"{tool} --version").strip() == f"{tool} 0.1.0"


def test_rms_status_says_daemon_not_running(installed: Installed) -> None:
    done = installed.box.rc("rms status")
    assert done.returncode == 1
    assert "daemon not running" in done.stderr


def test_systemd_analyze_verify_accepts_the_units(installed: Installed) -> None:
    paths = " ".join(f"/lib/systemd/system/{unit}" for unit in UNITS)
    done = installed.box.rc(f"systemd-analyze verify {paths}")
    # verify exits 0 even on unknown keys or bad values: any word from it is a finding.
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")


@pytest.mark.parametrize("unit", UNITS)
def test_each_units_command_exists_in_the_package(installed: Installed, unit: str) -> None:
    text = (installed.box.root / "lib/systemd/system" / unit).read_text()
    start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    program, command = start.removeprefix("ExecStart=").split()[:2]
    assert command in installed.box.sh(f"{program} --help")
    installed.box.sh(f"{program} {command} --help")


@pytest.mark.parametrize(("unit", "most"), [("rms", 2.5), ("vpn-discovery", 2.5)])
def test_the_unprivileged_services_are_well_sandboxed(
    installed: Installed, unit: str, most: float
) -> None:
    report = installed.box.sh(
        f"systemd-analyze security --offline=yes /lib/systemd/system/{unit}.service"
    )
    level = float(report.strip().splitlines()[-1].split(": ")[1].split()[0])
    print(f"{unit}.service exposure {level}")
    assert level <= most, report


def test_postinst_made_the_user_and_enabled_only_the_agent(installed: Installed) -> None:
    box = installed.box
    assert box.sh("id -nG rms").split() == ["rms"]
    assert box.sh("getent passwd rms").split(":")[5] == "/var/lib/rms"
    assert box.sh("getent group rms-admin").startswith("rms-admin:")
    wants = box.root / "etc/systemd/system/multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir() if "rms" in p.name) == ["rms.service"]
    assert not any((wants / unit).exists() for unit in UNITS[1:])
    pyc = list((box.root / "usr/lib/truecloud/rms").glob("__pycache__/*.pyc"))
    assert pyc, "py3compile left no byte-code"


def start_agent(box: Chroot) -> subprocess.Popen[str]:
    """`rms run` as systemd would: user rms, group rms-admin, CAP_NET_ADMIN only, no new
    privileges, state and runtime directories made for it; in a network namespace of its own."""
    box.sh("install -d -o rms -g rms -m 0700 /var/lib/rms; install -d -o rms -g rms /run/rms")
    setpriv = (
        "setpriv --reuid=rms --regid=rms --groups=$(getent group rms-admin | cut -d: -f3) "
        "--inh-caps=-all,+net_admin --ambient-caps=-all,+net_admin "
        "--bounding-set=-all,+net_admin --no-new-privs"
    )
    return subprocess.Popen(
        ["unshare", "--net", "chroot", str(box.root), "sh", "-c",
         f"exec env -i PATH=/usr/bin:/bin RMS_LOG_FORMAT=json {setpriv} rms run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_running(box: Chroot, agent: subprocess.Popen[str]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert agent.poll() is None, agent.communicate()
        done = box.rc("rms status --json")
        if done.stdout and json.loads(done.stdout).get("state") != "down":
            status: dict[str, object] = json.loads(done.stdout)
            return status
        time.sleep(0.5)
    raise AssertionError("rms did not answer on its control socket within 60 s")


def test_the_agent_runs_with_debians_libraries_as_rms_with_net_admin_only(
    installed: Installed,
) -> None:
    box = installed.box
    agent = start_agent(box)
    try:
        status = wait_running(box, agent)
        assert status["state"] in ("running", "degraded"), status
        proc = Path(f"/proc/{agent.pid}/status").read_text()
        fields = dict(line.split(":\t", 1) for line in proc.splitlines() if ":\t" in line)
        rms_uid = box.sh("id -u rms").strip()
        assert fields["Uid"].split()[0] == rms_uid
        assert int(fields["CapEff"], 16) == 1 << CAP_NET_ADMIN
        assert int(fields["CapBnd"], 16) == 1 << CAP_NET_ADMIN
        assert fields["NoNewPrivs"].strip() == "1"
        key = box.root / "var/lib/rms/node.key"
        assert key.stat().st_uid == int(rms_uid)
        assert key.stat().st_mode & 0o077 == 0
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err
    assert not (box.root / "run/rms/control.sock").exists()


def update_check(box: Chroot, library: Repo) -> subprocess.CompletedProcess[str]:
    """`rms update check --json` in the root, reading a copy of `library` from a directory
    (as from a USB stick); the config names no trusted root, so the shipped one is used."""
    served = box.root / "srv" / "library"
    for part in ("metadata", "targets"):
        shutil.copytree(library.path / part, served / part)
    (box.root / "etc" / "rms").mkdir(exist_ok=True)
    (box.root / "etc/rms/rms.toml").write_text('[update]\ndirectory = "/srv/library"\n')
    try:
        return box.rc("rms update check --json")
    finally:
        shutil.rmtree(served)
        (box.root / "etc/rms/rms.toml").unlink()
        shutil.rmtree(box.root / "var/lib/rms/library", ignore_errors=True)


def test_rms_update_trusts_the_shipped_library_root_by_default(installed: Installed) -> None:
    shipped = installed.box.root / "usr/share/rms/library-root.json"
    assert shipped.read_bytes() == installed.library.trusted_root.read_bytes()
    done = update_check(installed.box, installed.library)
    assert done.returncode == 0, done.stderr
    names = {t["name"] for t in json.loads(done.stdout)}
    assert names == {"rms_0.1.0_all.deb", "policy/policy.json"}


def test_rms_update_refuses_a_library_signed_by_other_keys(
    installed: Installed, tmp_path: Path
) -> None:
    other = signed_library(tmp_path / "other")
    done = update_check(installed.box, other)
    assert done.returncode == 1
    assert "refused" in done.stderr and "signatures" in done.stderr, done.stderr


def ours_left(path: Path) -> bool:
    """A file of the package still there, or a directory that only the package had."""
    if not (path.exists() or path.is_symlink()):
        return False
    return path.is_symlink() or not path.is_dir() or "truecloud" in path.name


def test_upgrade_then_purge_leave_no_files_of_ours(installed: Installed) -> None:
    box = installed.box
    uid = box.sh("id -u rms")
    apt_install(box, installed.upgrade)
    assert box.sh("dpkg-query -W -f='${Version}' truecloud") == "0.1.0-2"
    assert box.sh("rms --version").strip() == "rms 0.1.0"
    assert box.sh("id -u rms") == uid, "the upgrade made a new user"
    assert (box.root / "etc/systemd/system/multi-user.target.wants/rms.service").is_symlink()
    owned = box.sh("dpkg -L truecloud").split()
    box.sh("apt-get purge -y -q truecloud")
    assert box.rc("dpkg -L truecloud").returncode != 0
    assert [
        p for p in owned if p.startswith("/usr/lib/truecloud") and Path(box.root, p[1:]).exists()
    ] == []
    assert leftovers(installed.before, box.snapshot()) == []
    for db in ("passwd", "group", "shadow", "gshadow"):
        names = {line.split(":")[0] for line in (box.root / "etc" / db).read_text().splitlines()}
        assert not names & {"rms", "rms-admin"}, db
