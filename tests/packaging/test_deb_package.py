"""The built .deb without installing it: control fields, file list, units, maintainer scripts,
and build-deb.sh refusing bad inputs. Fast (one build of about 10-40 s, shared by the module)."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from rms.config import UpdateSection
from tests.packaging.debroot import BUILD_DEB, TOP, build_deb, run, signed_library
from tests.update_support import Repo

DEB_DIR = TOP / "packaging" / "debian"
PROJECT = tomllib.loads((TOP / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return signed_library(tmp_path_factory.mktemp("library"))


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory, library: Repo) -> Path:
    return build_deb(tmp_path_factory.mktemp("dist"), library_root=library.trusted_root)


@pytest.fixture(scope="module")
def files(deb: Path) -> list[str]:
    listing = run(["dpkg-deb", "--fsys-tarfile", deb])  # checks the archive opens
    assert listing
    names = run(["dpkg-deb", "-c", deb]).splitlines()
    return [line.split()[-1].removeprefix(".") for line in names]


def control(deb: Path, field: str) -> str:
    return run(["dpkg-deb", "-f", deb, field]).strip()


def mapping() -> dict[str, str]:
    pairs = {}
    for line in (DEB_DIR / "python-deps.txt").read_text().splitlines():
        words = line.split("#")[0].split()
        if words:
            pairs[words[0]] = words[1]
    return pairs


def test_control_fields(deb: Path) -> None:
    assert control(deb, "Package") == "truecloud"
    assert control(deb, "Version") == f"{PROJECT['version']}-1"
    assert control(deb, "Architecture") == "all"
    assert int(control(deb, "Installed-Size")) > 0
    assert deb.name == f"truecloud_{PROJECT['version']}-1_all.deb"


def test_depends_are_debians_packages_or_vendored(deb: Path, files: list[str]) -> None:
    depends = {d.split()[0] for d in control(deb, "Depends").split(", ")}
    for name, target in mapping().items():
        if target == "vendor":
            assert not any(d.endswith(name) for d in depends), name
        else:
            assert target in depends, name
    assert {"python3", "adduser"} <= depends
    vendored = {p.split("/")[4] for p in files if p.startswith("/usr/lib/truecloud/")}
    assert {"feedgen", "mfusepy.py", "aiohttp", "pyroute2", "tuf"} <= vendored


def test_console_scripts_are_wrappers_for_the_entry_points(deb: Path, tmp_path: Path) -> None:
    run(["dpkg-deb", "-x", deb, tmp_path])
    for name, target in PROJECT["scripts"].items():
        module, func = target.split(":")
        text = (tmp_path / "usr/bin" / name).read_text()
        assert text.startswith("#!/usr/bin/python3\n")
        assert f"from {module} import {func}" in text
        assert (tmp_path / "usr/bin" / name).stat().st_mode & 0o111


def test_files_are_arch_independent_and_free_of_build_paths(deb: Path, tmp_path: Path) -> None:
    run(["dpkg-deb", "-x", deb, tmp_path])
    every = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in every if p.suffix in (".so", ".pyc") or "__pycache__" in p.parts]
    marker = str(TOP).encode()
    assert not [p for p in every if marker in p.read_bytes()]
    assert not list(tmp_path.rglob("direct_url.json"))


def test_file_list_has_units_tmpfiles_and_docs(files: list[str]) -> None:
    for unit in ("rms", "vpn-discovery", "volume-provider", "cfs"):
        assert f"/lib/systemd/system/{unit}.service" in files
    assert "/usr/lib/tmpfiles.d/truecloud.conf" in files
    assert "/usr/share/doc/truecloud/copyright" in files
    assert "/usr/share/doc/truecloud/install.md" in files
    assert "/usr/share/rms/library-root.json" in files
    # Nothing in /etc: config is optional, so purge has no conffile to forget.
    assert not [f for f in files if f.startswith("/etc/")]


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEB_DIR / name)
    return parser


def test_the_agent_has_cap_net_admin_only_and_a_user_of_its_own() -> None:
    service = unit("rms.service")["Service"]
    assert service["User"] == "rms"
    assert service["AmbientCapabilities"] == "CAP_NET_ADMIN"
    assert service["CapabilityBoundingSet"] == "CAP_NET_ADMIN"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "rms"
    assert service["RuntimeDirectory"] == "rms"
    assert service["Type"] == "notify"
    assert service["WatchdogSec"].endswith("s")


def test_storage_helpers_are_separate_root_units() -> None:
    for name in ("volume-provider", "cfs"):
        service = unit(f"{name}.service")
        assert service["Service"]["User"] == "root"
        assert service["Service"]["ExecStart"].startswith(f"/usr/bin/{name} ")
        assert "rms.service" in service["Unit"]["Requires"]
        assert "CAP_SYS_ADMIN" in service["Service"]["CapabilityBoundingSet"]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="scripts/dev.sh installs it")
def test_scripts_pass_shellcheck() -> None:
    scripts = [DEB_DIR / s for s in ("postinst", "prerm", "postrm")]
    run(["shellcheck", "-s", "sh", *scripts])
    run(["shellcheck", BUILD_DEB])


@pytest.mark.parametrize("action", ["bogus", ""])
def test_maintainer_scripts_refuse_unknown_actions(action: str) -> None:
    for script in ("postinst", "prerm", "postrm"):
        done = subprocess.run(
            ["sh", str(DEB_DIR / script), action], capture_output=True, text=True, check=False
        )
        assert done.returncode == 1
        assert "unknown argument" in done.stderr


def copy_tree(dest: Path) -> Path:
    """The parts of the checkout build-deb.sh reads, to break one on purpose."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(TOP / name, dest / name)
    for name in ("rms", "vpn_discovery", "volume_provider", "cfs", "packaging"):
        shutil.copytree(TOP / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "docs").mkdir()
    shutil.copy(TOP / "docs" / "install.md", dest / "docs" / "install.md")
    return dest / "packaging" / "build-deb.sh"


def build_result(
    script: Path, *args: str, root: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    rooted = ["--library-root", str(root)] if root else []
    # The copy has no .venv: the build's Python is this checkout's (it checks the root).
    env = {**(env or os.environ), "PYTHON": str(TOP / ".venv" / "bin" / "python")}
    return subprocess.run(
        [str(script), "--out", str(script.parent / "out"), *rooted, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env=env,
    )


def test_the_package_ships_the_library_root_rms_update_reads_by_default(
    deb: Path, library: Repo, tmp_path: Path
) -> None:
    run(["dpkg-deb", "-x", deb, tmp_path])
    shipped = tmp_path / "usr/share/rms/library-root.json"
    assert shipped.read_bytes() == library.trusted_root.read_bytes()
    assert shipped.stat().st_mode & 0o777 == 0o644
    assert str(UpdateSection().trusted_root) == "/usr/share/rms/library-root.json"


@pytest.mark.parametrize("args", [("--release", "x"), ("--release",), ("--bogus",)])
def test_build_refuses_misuse(tmp_path: Path, args: tuple[str, ...], library: Repo) -> None:
    done = build_result(copy_tree(tmp_path), *args, root=library.trusted_root)
    assert done.returncode == 2
    assert "build-deb.sh" in done.stderr or "usage" in done.stderr


def test_build_without_a_library_root_stops_and_says_how_to_get_one(tmp_path: Path) -> None:
    script = copy_tree(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "TRUECLOUD_LIBRARY_ROOT"}
    done = build_result(script, env=env)
    assert done.returncode == 2
    assert "--library-root" in done.stderr and "1.root.json" in done.stderr
    done = build_result(script, root=tmp_path / "absent.json", env=env)
    assert (done.returncode, "no such file" in done.stderr) == (2, True)
    assert not (script.parent / "out").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("garbage", "not a TUF root.json"),
        ("one signature", "1 of the 2 signatures"),
        ("forged", "0 of the 2 signatures"),
        ("targets metadata", "not a TUF root.json"),
    ],
)
def test_build_refuses_a_root_no_node_could_trust(
    tmp_path: Path, library: Repo, change: str, message: str
) -> None:
    script = copy_tree(tmp_path)
    doc = json.loads(library.trusted_root.read_bytes())
    if change == "garbage":
        data = b"\x00not json"
    elif change == "one signature":
        doc["signatures"] = doc["signatures"][:1]
        data = json.dumps(doc).encode()
    elif change == "forged":
        doc["signed"]["roles"]["targets"]["threshold"] = 3
        data = json.dumps(doc).encode()
    else:
        data = (library.path / "metadata" / "1.targets.json").read_bytes()
    bad = tmp_path / "root.json"
    bad.write_bytes(data)
    done = build_result(script, root=bad)
    assert done.returncode == 1, done.stderr
    assert message in done.stderr
    assert not (script.parent / "out").exists()


def test_the_library_root_can_come_from_the_environment(tmp_path: Path, library: Repo) -> None:
    script = copy_tree(tmp_path)
    deps = tmp_path / "packaging/debian/python-deps.txt"
    deps.write_text("\n".join(s for s in deps.read_text().splitlines() if "msgpack" not in s))
    env = {**os.environ, "TRUECLOUD_LIBRARY_ROOT": str(library.trusted_root)}
    done = build_result(script, env=env)  # the root is taken; the build stops at msgpack
    assert done.returncode == 1 and "msgpack (pyproject.toml)" in done.stderr, done.stderr
    assert "ships" in done.stderr and "root v1" in done.stderr
    env["TRUECLOUD_LIBRARY_ROOT"] = str(tmp_path / "absent.json")
    done = build_result(script, env=env)
    assert (done.returncode, "no such file" in done.stderr) == (2, True)


@pytest.mark.parametrize(
    ("listing", "name", "message"),
    [
        ("python-deps.txt", "msgpack", "msgpack (pyproject.toml) is not in packaging/debian/"),
        ("vendor.txt", "feedgen", "feedgen is marked vendor but not pinned in vendor.txt"),
    ],
)
def test_build_refuses_a_dependency_it_cannot_place(
    tmp_path: Path, listing: str, name: str, message: str, library: Repo
) -> None:
    script = copy_tree(tmp_path)
    path = tmp_path / "packaging/debian" / listing
    path.write_text("\n".join(s for s in path.read_text().splitlines() if name not in s))
    done = build_result(script, root=library.trusted_root)
    assert done.returncode == 1
    assert message in done.stderr
    assert not (script.parent / "out").exists()
