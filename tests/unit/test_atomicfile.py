"""rms.atomicfile: the one way state files are replaced (a crash leaves old or new, never half)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from rms.atomicfile import write_atomic


def test_replaces_the_file_with_its_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state" / "leases.bin"
    write_atomic(path, b"first", mode=0o600, dir_mode=0o700)
    write_atomic(path, b"second", mode=0o600, dir_mode=0o700)
    assert path.read_bytes() == b"second"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["leases.bin"]


def test_a_failed_write_keeps_the_old_content_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "records"
    write_atomic(path, b"kept")
    with pytest.raises(TypeError):
        write_atomic(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"kept"
    assert [p.name for p in tmp_path.iterdir()] == ["records"]


def test_a_file_where_the_directory_should_be_is_an_oserror(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(OSError):
        write_atomic(blocker / "records", b"x")
    assert blocker.read_bytes() == b""
