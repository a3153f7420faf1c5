"""The real daemon: readiness, status, shutdown, and refusals, over its real control socket."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

from rms.identity import load_or_create
from tests.integration.conftest import (
    RunningDaemon,
    daemon_env,
    launch,
    rms_cli,
    start_daemon,
    stop_daemon,
)


def test_status_json_reports_running_with_the_node_id(daemon: RunningDaemon) -> None:
    result = daemon.rms("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    identity = load_or_create(daemon.state_dir)
    assert status["schema_version"] == 1
    assert status["state"] == "running"
    assert status["node_id"] == hashlib.sha256(identity.public_key).hexdigest()
    assert status["node_id"] == identity.node_id_hex


def test_status_json_carries_no_secret(daemon: RunningDaemon) -> None:
    identity = load_or_create(daemon.state_dir)
    key_bytes = (daemon.state_dir / "node.key").read_bytes()
    text = daemon.rms("status", "--json").stdout + daemon.rms("status").stdout
    seed = bytes(identity.signing_key)
    for secret in (seed.hex(), key_bytes.hex(), seed.hex().upper()):
        assert secret not in text


def test_status_table_is_readable(daemon: RunningDaemon) -> None:
    result = daemon.rms("status")
    assert result.returncode == 0
    assert "state      running" in result.stdout
    assert "uptime" in result.stdout


def test_key_file_is_private(daemon: RunningDaemon) -> None:
    assert (daemon.state_dir / "node.key").stat().st_mode & 0o777 == 0o600


def test_control_socket_is_not_world_reachable(daemon: RunningDaemon) -> None:
    mode = daemon.socket_path.stat().st_mode & 0o777
    assert mode & 0o007 == 0
    assert daemon.socket_path.parent.stat().st_mode & 0o007 == 0


def test_sigterm_stops_in_order(daemon: RunningDaemon) -> None:
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
    assert daemon.next_notification(5).startswith("STOPPING=1")
    assert not daemon.socket_path.exists()
    down = daemon.rms("status")
    assert down.returncode == 1
    assert "daemon not running" in down.stderr


def test_sigint_stops_too(daemon: RunningDaemon) -> None:
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.proc.wait(10) == 0


def test_second_daemon_on_the_same_state_dir_is_refused(daemon: RunningDaemon) -> None:
    env = dict(daemon.env, RMS_CONTROL_SOCKET=str(daemon.socket_path.parent / "other.sock"))
    result = rms_cli("run", env=env)
    assert result.returncode == 1
    assert "another rms is running" in result.stderr


def test_second_daemon_on_the_same_socket_is_refused(daemon: RunningDaemon, tmp_path: Path) -> None:
    env = dict(daemon.env, RMS_NODE_STATE_DIR=str(tmp_path / "other-state"))
    result = rms_cli("run", env=env)
    assert result.returncode == 1
    assert "already listening" in result.stderr
    assert daemon.rms("status").returncode == 0


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    first = start_daemon(tmp_path)
    first.proc.kill()
    first.proc.wait()
    assert first.socket_path.exists()
    again = launch(first.env, first.notify)
    try:
        assert again.rms("status").returncode == 0
    finally:
        stop_daemon(again)


def test_corrupt_key_stops_the_daemon_and_is_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    key = state / "node.key"
    key.write_bytes(b"\x00" * 40)
    key.chmod(0o600)
    env = daemon_env(state, tmp_path / "ctl.sock")
    result = rms_cli("run", env=env)
    assert result.returncode == 1
    assert "node.key" in result.stderr
    assert key.read_bytes() == b"\x00" * 40
    assert not (tmp_path / "ctl.sock").exists()


def test_bad_config_is_misuse(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[node]\nstate_dir = 3\n")
    result = rms_cli("run", "--config", str(bad))
    assert result.returncode == 2
    assert "state_dir" in result.stderr


def test_cli_misuse_and_version() -> None:
    rms = rms_cli
    assert rms("--version").stdout.startswith("rms ")
    assert rms().returncode == 2
    assert rms("status", "--bogus").returncode == 2
    assert rms("frobnicate").returncode == 2
