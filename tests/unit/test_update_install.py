"""Installers: a verified file reaches the right one, and a failing one says why."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tuf.api.metadata import TargetFile

from rms.update.client import (
    POLICY_TARGET,
    ByKind,
    CommandInstaller,
    FileInstaller,
    InstallError,
    node_installer,
)
from tests.update_support import Recorder


def verified(tmp_path: Path, name: str, data: bytes) -> tuple[Path, TargetFile]:
    path = tmp_path / "cache" / name.replace("/", "_")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, TargetFile.from_data(name, data)


def test_a_command_installer_runs_the_tool_on_the_file(tmp_path: Path) -> None:
    path, info = verified(tmp_path, "a.deb", b"package")
    log = tmp_path / "ran"
    script = f"import sys; open({str(log)!r}, 'w').write(sys.argv[1])"
    CommandInstaller((sys.executable, "-c", script)).install("a.deb", path, info)
    assert log.read_text() == str(path)


def test_a_failing_or_missing_tool_is_an_install_error(tmp_path: Path) -> None:
    path, info = verified(tmp_path, "a.deb", b"package")
    failing = (sys.executable, "-c", "import sys; sys.exit('dpkg: dependency problems')")
    with pytest.raises(InstallError, match="dependency problems"):
        CommandInstaller(failing).install("a.deb", path, info)
    with pytest.raises(InstallError, match="could not install"):
        CommandInstaller((str(tmp_path / "no-such-tool"),)).install("a.deb", path, info)
    slow = (sys.executable, "-c", "import time; time.sleep(5)")
    with pytest.raises(InstallError, match="could not install"):
        CommandInstaller(slow, timeout_s=0.2).install("a.deb", path, info)


def test_files_are_written_below_their_directory(tmp_path: Path) -> None:
    path, info = verified(tmp_path, "docs/notes.txt", b"notes")
    FileInstaller(tmp_path / "out").install("docs/notes.txt", path, info)
    assert (tmp_path / "out" / "docs" / "notes.txt").read_bytes() == b"notes"
    info.length = 17 * 1024 * 1024
    with pytest.raises(InstallError, match="16 MiB"):
        FileInstaller(tmp_path / "out").install("docs/notes.txt", path, info)
    path, info = verified(tmp_path, "x.txt", b"x")
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("a file where the directory should be")
    with pytest.raises(InstallError, match="cannot write"):
        FileInstaller(blocked).install("x.txt", path, info)


def test_each_kind_goes_to_its_installer(tmp_path: Path) -> None:
    debs, ipks, other, policy = Recorder(), Recorder(), Recorder(), Recorder()
    chooser = ByKind({".deb": debs, ".ipk": ipks}, other, {POLICY_TARGET: policy})
    for name in ("a.deb", "b.ipk", "c.txt", POLICY_TARGET):
        chooser.install(name, *verified(tmp_path, name, name.encode()))
    assert [n for n, _ in debs.installed] == ["a.deb"]
    assert [n for n, _ in ipks.installed] == ["b.ipk"]
    assert [n for n, _ in other.installed] == ["c.txt"]
    assert [n for n, _ in policy.installed] == [POLICY_TARGET]
    node = node_installer(tmp_path / "docs", tmp_path / "etc" / "policy.json")
    node.install(POLICY_TARGET, *verified(tmp_path, POLICY_TARGET, b"{}"))
    assert (tmp_path / "etc" / "policy.json").read_bytes() == b"{}"
