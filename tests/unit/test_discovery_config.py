"""The mirror's TOML configuration and the `vpn-discovery serve` command's refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from vpn_discovery.cli import main
from vpn_discovery.config import (
    ConfigError,
    MirrorConfig,
    load_config,
    parse_config,
)

FULL = """
[server]
listen = ["127.0.0.1"]
port = 8443
cert_file = "/tls/cert.pem"
key_file = "/tls/key.pem"
public_url = "https://discovery.lab.test/feed.rss"

[feed]
default_items = 8
max_items = 32

[store]
state_file = "/state/records.msgpack"
max_records = 100
per_founder = 2
save_interval_s = 1

[peers]
urls = ["https://10.0.0.2:8443", "https://10.0.0.3:8443/feed.rss"]
ca_file = "/tls/ca.pem"
anti_entropy_s = 0.5
timeout_s = 2
max_sync_bytes = 65536

[log]
format = "json"
level = "debug"
"""


def test_every_key_is_read(tmp_path: Path) -> None:
    path = tmp_path / "mirror.toml"
    path.write_text(FULL)
    config = load_config(path)
    assert config.server.listen == ("127.0.0.1",)
    assert config.server.port == 8443
    assert config.server.cert_file == Path("/tls/cert.pem")
    assert config.feed.max_items == 32
    assert config.store.save_interval_s == 1.0
    assert config.peers.urls[1].endswith("/feed.rss")
    assert config.peers.anti_entropy_s == 0.5
    assert config.log.level == "debug"


def test_an_empty_file_gives_the_defaults() -> None:
    config = parse_config({})
    assert config == MirrorConfig()
    assert config.server.listen == ("0.0.0.0", "::")
    assert config.feed.default_items == 16


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"nope": {}}, "unknown section"),
        ({"server": {"prot": 1}}, "unknown key"),
        ({"server": []}, "must be a table"),
        ({"server": {"port": "443"}}, "whole number"),
        ({"server": {"port": 70000}}, "1..65535"),
        ({"server": {"listen": []}}, "at least one"),
        ({"server": {"listen": "0.0.0.0"}}, "a list of at most 64 strings"),
        ({"server": {"cert_file": ""}}, "non-empty path"),
        ({"server": {"public_url": "http://x/feed.rss"}}, "https"),
        ({"feed": {"default_items": 100}}, "default_items <= max_items"),
        ({"feed": {"max_items": 1000}}, "max_items <= 256"),
        ({"peers": {"urls": ["http://m2"]}}, "not an https"),
        ({"peers": {"anti_entropy_s": 0}}, "positive"),
        ({"peers": {"timeout_s": float("inf")}}, "finite"),
        ({"peers": {"timeout_s": True}}, "number"),
        ({"store": {"max_records": 0}}, "at least 1"),
        ({"log": {"level": "loud"}}, "log.level"),
    ],
)
def test_bad_values_are_refused_with_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_a_file_that_is_not_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server\n")
    with pytest.raises(ConfigError, match=r"bad\.toml is not valid TOML"):
        load_config(path)


def test_serve_exits_2_on_a_missing_or_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nport = "x"\n')
    assert main(["serve", "--config", str(bad)]) == 2
    assert "server.port must be a whole number; nothing was started" in capsys.readouterr().err


@pytest.fixture
def _reset_logging() -> Iterator[None]:
    # serve configures structlog for the process, onto pytest's captured stderr.
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("_reset_logging")
def test_serve_exits_1_when_the_certificate_cannot_be_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mirror.toml"
    path.write_text(
        f'[server]\ncert_file = "{tmp_path}/none.pem"\nkey_file = "{tmp_path}/none.key"\n'
        f'[store]\nstate_file = "{tmp_path}/records.msgpack"\n[log]\nformat = "json"\n'
    )
    assert main(["serve", "--config", str(path)]) == 1
    assert "cannot load the certificate" in capsys.readouterr().err


def test_without_a_command_the_usage_and_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: vpn-discovery" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    assert "--config" in capsys.readouterr().out
