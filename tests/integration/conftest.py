"""A real `rms run` process with its own state directory and control socket."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rms.control.client import ControlClient


@dataclass
class RunningDaemon:
    proc: subprocess.Popen[bytes]
    state_dir: Path
    socket_path: Path
    notify: socket.socket
    env: dict[str, str]

    def rms(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the `rms` CLI against this daemon."""
        return rms_cli(*args, env=self.env)

    def call(self, route: str, body: Any = None) -> dict[str, Any]:
        """GET `route` from the daemon's control API, or POST `body` to it."""
        client = ControlClient(self.socket_path)
        if body is None:
            return asyncio.run(client.get_json(route))
        return asyncio.run(client.post_json(route, body))

    def next_notification(self, timeout: float = 20) -> str:
        self.notify.settimeout(timeout)
        data: bytes = self.notify.recv(4096)
        return data.decode()


def rms_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `rms` command line to completion and capture what it says."""
    return subprocess.run(
        [sys.executable, "-m", "rms", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def daemon_env(state_dir: Path, sock: Path, notify_path: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RMS_NODE_STATE_DIR=str(state_dir),
        RMS_CONTROL_SOCKET=str(sock),
        RMS_CONFIG=str(state_dir.parent / "absent.toml"),
        RMS_LOG_FORMAT="json",
        RMS_VPN_ENABLED="false",  # these tests are about the daemon, not its VPNs
    )
    # An explicitly named but absent config file is an error; point at an empty one instead.
    Path(env["RMS_CONFIG"]).write_text("")
    if notify_path is not None:
        env["NOTIFY_SOCKET"] = str(notify_path)
    return env


def start_daemon(tmp_path: Path, name: str = "node") -> RunningDaemon:
    """Start `rms run` in a fresh directory and wait for systemd's READY=1 from it."""
    base = tmp_path / name
    base.mkdir()
    notify_path = base / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    env = daemon_env(base / "state", base / "run" / "control.sock", notify_path)
    return launch(env, listener)


def launch(env: dict[str, str], listener: socket.socket) -> RunningDaemon:
    """Start `rms run` with this environment and wait until it says READY=1."""
    state_dir = Path(env["RMS_NODE_STATE_DIR"])
    log_path = state_dir.parent / "rms.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rms", "run"], env=env, stdout=log, stderr=log
        )
    running = RunningDaemon(proc, state_dir, Path(env["RMS_CONTROL_SOCKET"]), listener, env)
    try:
        message = running.next_notification()
    except TimeoutError:
        stop_daemon(running)
        raise AssertionError(log_path.read_text()) from None
    assert message.startswith("READY=1"), message
    return running


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 10) -> None:
    """SIGTERM, and SIGKILL when the process is still there after `grace_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_daemon(d: RunningDaemon) -> None:
    stop_process(d.proc)
    d.notify.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RunningDaemon]:
    d = start_daemon(tmp_path)
    try:
        yield d
    finally:
        stop_daemon(d)
