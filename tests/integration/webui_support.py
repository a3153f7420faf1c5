"""A real daemon with a contribution, and `rms ui` in front of it, for the web UI tests."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import (
    RunningDaemon,
    daemon_env,
    launch,
    stop_daemon,
    stop_process,
)


@dataclass
class WebUi:
    daemon: RunningDaemon
    proc: subprocess.Popen[str]
    url: str  # the login link rms ui printed

    @property
    def base(self) -> str:
        return self.url.split("/?", 1)[0]


def start_node(tmp_path: Path) -> RunningDaemon:
    """`rms run` offering 20 GiB and 2 cores."""
    base = tmp_path / "node"
    base.mkdir()
    env = daemon_env(base / "state", base / "run" / "control.sock", base / "notify")
    env.update(RMS_CONTRIBUTION_STORAGE="20 GiB", RMS_CONTRIBUTION_CPU="2")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(base / "notify"))
    return launch(env, listener)


def start_ui(daemon: RunningDaemon) -> WebUi:
    """`rms ui --port 0` against the daemon; waits for the link it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rms", "ui", "--socket", str(daemon.socket_path), "--port", "0"],
        env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("rms ui: open "):
        stop_ui(proc)
        raise AssertionError(f"rms ui did not start: {line!r}")
    return WebUi(daemon, proc, line.removeprefix("rms ui: open ").strip())


def stop_ui(proc: subprocess.Popen[str]) -> None:
    stop_process(proc)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture
def webui(tmp_path: Path) -> Iterator[WebUi]:
    daemon = start_node(tmp_path)
    try:
        ui = start_ui(daemon)
        try:
            yield ui
        finally:
            stop_ui(ui.proc)
    finally:
        stop_daemon(daemon)
