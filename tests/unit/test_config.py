"""The config loader: defaults, file, environment, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from rms.config import MAX_CONFIG_BYTES, Config, ConfigError, load_config


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "rms.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_defaults_work_with_no_file(tmp_path: Path) -> None:
    config = load_config(environ={}, default_path=tmp_path / "absent.toml")
    assert config == Config()
    assert config.node.state_dir == Path("/var/lib/rms")
    assert config.control.socket == Path("/run/rms/control.sock")


def test_file_values_are_used(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\nstate_dir = "/srv/rms"\n[log]\nlevel = "debug"\n')
    config = load_config(path, environ={})
    assert config.node.state_dir == Path("/srv/rms")
    assert config.log.level == "debug"
    assert config.control.admin_group == "rms-admin"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[node]\nstate_dir = "/srv/rms"\n')
    env = {"RMS_NODE_STATE_DIR": "/tmp/other", "RMS_LOG_FORMAT": "json"}
    config = load_config(path, environ=env)
    assert config.node.state_dir == Path("/tmp/other")
    assert config.log.format == "json"


def test_rms_config_variable_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[control]\nsocket = "/tmp/x.sock"\n')
    assert load_config(environ={"RMS_CONFIG": str(path)}).control.socket == Path("/tmp/x.sock")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[nodes]\nstate_dir = '/x'\n", "unknown section"),
        ("[node]\nstatedir = '/x'\n", "unknown key"),
        ("[node]\nstate_dir = 5\n", "must be a non-empty path"),
        ("[node]\nstate_dir = ''\n", "must be a non-empty path"),
        ("node = 3\n", "must be a table"),
        ("[control]\nadmin_group = ['a']\n", "must be a string"),
        ("[log]\nformat = 'xml'\n", "log.format"),
        ("[log]\nlevel = 'loud'\n", "log.level"),
        ("[node\nstate_dir = 1", "not valid TOML"),
        ("[node]\nstate_dir = '" + "a" * 5000 + "'\n", "longer than"),
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(write(tmp_path, text), environ={})


def test_binary_garbage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, b"\xff\xfe\x00garbage"), environ={})


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    text = "# " + "x" * MAX_CONFIG_BYTES + "\n"
    with pytest.raises(ConfigError, match="larger than"):
        load_config(write(tmp_path, text), environ={})


def test_named_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})


def test_bad_environment_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"log\.level"):
        load_config(environ={"RMS_LOG_LEVEL": "chatty"}, default_path=tmp_path / "absent.toml")


def test_typed_values_from_file_and_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[vpn]\nenabled = false\npublic_ips = ["198.18.0.11", "2001:2::c612:b"]\n'
        '[discovery]\nurls = ["https://d.example/feed.rss"]\n',
    )
    config = load_config(path, environ={})
    assert config.vpn.enabled is False
    assert config.vpn.public_ips == ("198.18.0.11", "2001:2::c612:b")
    assert config.discovery.urls == ("https://d.example/feed.rss",)
    env = {"RMS_VPN_ENABLED": "yes", "RMS_VPN_PUBLIC_IPS": "10.0.0.1, 10.0.0.2,"}
    config = load_config(path, environ=env)
    assert config.vpn.enabled is True
    assert config.vpn.public_ips == ("10.0.0.1", "10.0.0.2")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[vpn]\nenabled = 'maybe'\n", "true or false"),
        ("[vpn]\nenabled = 1\n", "true or false"),
        ("[vpn]\npublic_ips = 'x'\n", "public_ips"),
        ("[vpn]\npublic_ips = [1, 2]\n", "must be a string"),
        ("[vpn]\npublic_ips = [" + "'a'," * 65 + "]\n", "at most 64"),
        ("[vpn]\nbackend = 'magic'\n", "vpn.backend"),
        ("[discovery]\nurls = ['http://plain/feed.rss']\n", "not an https"),
    ],
)
def test_bad_typed_values_are_refused(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(write(tmp_path, text), environ={})
