"""The UCI-to-TOML converter the init script runs: the shipped defaults, typing by the
daemon's own configuration, and malformed, oversized and hostile UCI files refused with
the line and the reason while the previous TOML stays as it was."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rms.config import load_config
from tests.packaging.openwrt_support import FILES, load_uci2toml

uci2toml = load_uci2toml()


def convert(tmp_path: Path, text: str | bytes) -> tuple[int, str, Path]:
    src, out = tmp_path / "rms", tmp_path / "etc/rms.toml"
    if isinstance(text, str):
        src.write_text(text)
    else:
        src.write_bytes(text)
    proc = subprocess.run(
        [sys.executable, str(FILES / "uci2toml.py"), str(src), str(out)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    return proc.returncode, proc.stderr, out


def test_the_shipped_defaults_become_a_config_the_daemon_loads(tmp_path: Path) -> None:
    code, err, out = convert(tmp_path, (FILES / "rms.config").read_text())
    assert code == 0, err
    config = load_config(out)
    assert str(config.node.state_dir) == "/etc/rms"
    assert str(config.control.socket) == "/var/run/rms/control.sock"
    assert (config.vpn.enabled, config.vpn.backend, config.vpn.public_ips) == (True, "kernel", ())
    assert "service" not in tomllib.loads(out.read_text())
    assert out.stat().st_mode & 0o777 == 0o644


def test_lists_booleans_quotes_comments_and_anonymous_sections(tmp_path: Path) -> None:
    text = """
# a comment
config vpn
\toption enabled 'off'   # trailing comment
\tlist public_ips 203.0.113.7
\tlist public_ips "2001:db8::1"
\toption location 'it'\\''s "here"'
config discovery
\tlist urls 'https://a.example/feed.rss'
\tlist urls 'https://b.example/feed.rss'
config log 'log'
\toption level ''
"""
    code, err, out = convert(tmp_path, text)
    assert code == 0, err
    config = load_config(out)
    assert config.vpn.enabled is False
    assert config.vpn.public_ips == ("203.0.113.7", "2001:db8::1")
    assert config.vpn.location == 'it\'s "here"'
    assert len(config.discovery.urls) == 2
    assert config.log.level == "info"  # empty option: the daemon's default


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("config vpn\n\toption location 'open\n", ":2: No closing quotation"),
        ("\toption enabled '1'\n", ":1: expected `config TYPE"),
        ("config vpn\n\tset enabled '1'\n", ":2: expected"),
        ("config vpn\n\toption enabled 1 2\n", ":2: expected"),
        ("config bogus\n", ":1: unknown section type 'bogus'"),
        ("config vpn\n\toption colour 'red'\n", "unknown option vpn.colour"),
        ("config vpn\n\tlist backend 'kernel'\n", "vpn.backend takes one value"),
        ("config vpn\n\toption enabled 'maybe'\n", "vpn.enabled must be 1 or 0"),
        ("config vpn\n\toption enabled 1\n\toption enabled 0\n", ":3: option enabled is set twice"),
        ("config vpn\nconfig vpn\n", ":2: a second `config vpn` section"),
        ("config vpn\n\toption location 'a\x07b'\n", ":2: a value holds a control character"),
        ("config v-pn\n", ":1: 'v-pn' is not a UCI name"),
        ("config vpn\n\toption backend 'teleport'\n", "vpn.backend must be one of"),
        ("config discovery\n\tlist urls 'http://plain.example/'\n", "is not an https:// URL"),
        ("config vpn\n\toption location '" + "x" * 5000 + "'\n", "line longer than 4096"),
        ("config vpn\n" + "\tlist public_ips 192.0.2.1\n" * 65, "more than 64 items"),
        ("# pad\n" * 50_000, "larger than"),
    ],
)
def test_malformed_and_unusable_files_are_refused_and_the_old_toml_kept(
    tmp_path: Path, text: str, reason: str
) -> None:
    out = tmp_path / "etc/rms.toml"
    out.parent.mkdir()
    out.write_text("# the previous, good file\n")
    code, err, _ = convert(tmp_path, text)
    assert code == 1
    assert reason in err and "was left as it was" in err
    assert out.read_text() == "# the previous, good file\n"
    assert [p.name for p in out.parent.iterdir()] == ["rms.toml"]  # no temporary left


def test_bytes_that_are_not_utf8_are_refused(tmp_path: Path) -> None:
    code, err, _ = convert(tmp_path, b"config vpn\n\toption location '\xff\xfe'\n")
    assert code == 1 and "cannot read" in err


def test_a_value_cannot_smuggle_toml(tmp_path: Path) -> None:
    sneaky = 'x"\n[control]\nsocket = "/tmp/evil'
    escaped = sneaky.replace("'", "'\\''")
    code, err, out = convert(tmp_path, f"config vpn\n\toption location '{escaped}'\n")
    # the newline makes it two UCI lines: the second is refused, nothing is written
    assert code == 1 and not out.exists(), err
    tables = uci2toml.to_config(
        [uci2toml.Section("vpn", "vpn", 1, {"location": 'x"] = 1 [control] socket = "/e'})]
    )
    parsed = tomllib.loads(uci2toml.dump_toml(tables))
    assert parsed == {"vpn": {"location": 'x"] = 1 [control] socket = "/e'}}


def test_misuse_exits_2() -> None:
    assert uci2toml.main([]) == 2
    assert uci2toml.main(["only-one"]) == 2
