"""The lab on this machine: real namespaces, mounts and `rms run` processes.

Every test uses its own lab name, so it never touches a demo lab, and the `lab_name` fixture
runs `rms lab down` in `finally` whatever happened.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from rms.lab.layout import LabPaths
from rms.lab.procs import pids_in
from tests.lab.support import assert_clean, lab, namespaces_of, status_json

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.timeout(120),
]

# A one-shot UDP echo on IPv4 then IPv6; the client prints what came back.
ECHO_SERVER = """
import socket, sys
for family, addr in ((socket.AF_INET, sys.argv[1]), (socket.AF_INET6, sys.argv[2])):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((addr, 7007))
    s.settimeout(20)
    data, peer = s.recvfrom(100)
    s.sendto(data, peer)
"""
ECHO_CLIENT = """
import socket, sys, time
for family, addr in ((socket.AF_INET, sys.argv[1]), (socket.AF_INET6, sys.argv[2])):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    for _ in range(20):
        s.sendto(b"ping " + addr.encode(), (addr, 7007))
        try:
            print(s.recvfrom(100)[0].decode(), flush=True)
            break
        except TimeoutError:
            time.sleep(0.1)
"""


class Up:
    """`rms lab up` running in the background, its output read line by line."""

    def __init__(self, name: str, nodes: int) -> None:
        argv = [sys.executable, "-m", "rms", "lab", "up", "--name", name, "--nodes", str(nodes)]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, marker: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(marker in line for line in self.seen):
            self.seen.append(self.lines.get(timeout=max(deadline - time.monotonic(), 0.01)))

    def finish(self, timeout: float = 60) -> str:
        self.proc.wait(timeout=timeout)
        time.sleep(0.1)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_nodes_run_talk_and_go_away_without_a_trace(lab_name: str) -> None:
    up = lab(lab_name, "up", "--nodes", "3")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "[3/3] node3 198.18.0.13 started" in up.stdout
    assert f"rms lab down --name {lab_name}" in up.stdout

    ids = set()
    for k in (1, 2, 3):
        done = lab(lab_name, "exec", f"node{k}", "--", "rms", "status", "--json")
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["state"] == "running"
        ids.add(answer["node_id"])
    assert len(ids) == 3
    assert lab(lab_name, "exec", "node1", "--", "sh", "-c", "exit 7").returncode == 7

    code, status = status_json(lab_name)
    assert code == 0 and status["phase"] == "up"
    assert [n["name"] for n in status["nodes"]] == ["node1", "node2", "node3"]
    assert all(n["alive"] and n["state"] == "running" for n in status["nodes"])
    assert {n["node_id"] for n in status["nodes"]} == ids

    seen = namespaces_of(lab_name)
    pids = [n["pid"] for n in status["nodes"]]
    os.kill(pids[1], signal.SIGKILL)
    code, status = status_json(lab_name)
    assert code == 1
    assert [n["alive"] for n in status["nodes"]] == [True, False, True]

    down = lab(lab_name, "down")
    assert down.returncode == 0, down.stderr
    assert_clean(lab_name, seen, pids)


def test_nodes_reach_each_other_over_the_bridge(lab_name: str) -> None:
    assert lab(lab_name, "up", "--nodes", "2").returncode == 0
    addrs = ("198.18.0.11", "2001:2::c612:b")
    exec_node1 = [sys.executable, "-m", "rms", "lab", "exec", "--name", lab_name, "node1", "--"]
    server = subprocess.Popen([*exec_node1, "python", "-c", ECHO_SERVER, *addrs])
    try:
        client = lab(lab_name, "exec", "node2", "--", "python", "-c", ECHO_CLIENT, *addrs)
        assert client.stdout.split("\n")[:2] == [f"ping {a}" for a in addrs], client.stderr
        assert server.wait(timeout=20) == 0
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def test_a_killed_up_is_cleaned_by_the_next_up_and_down(lab_name: str) -> None:
    up = Up(lab_name, 3)
    try:
        up.wait_for("[2/3]")
        seen = namespaces_of(lab_name)
        up.proc.send_signal(signal.SIGKILL)
    finally:
        up.kill()
    code, status = status_json(lab_name)
    assert code == 1 and status["phase"] == "stale"

    again = lab(lab_name, "up", "--nodes", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "left behind; cleaning up first" in again.stdout
    assert pids_in(seen - namespaces_of(lab_name)) == []

    # Lose the state file too: teardown must not need it.
    seen |= namespaces_of(lab_name)
    LabPaths(lab_name).state_file.unlink()
    assert lab(lab_name, "down").returncode == 0
    assert_clean(lab_name, seen, [])


def test_ctrl_c_during_up_leaves_nothing(lab_name: str) -> None:
    up = Up(lab_name, 3)
    try:
        up.wait_for("[1/3]")
        seen = namespaces_of(lab_name)
        up.proc.send_signal(signal.SIGINT)
        output = up.finish()
    finally:
        up.kill()
    assert up.proc.returncode == 130, output
    assert "nothing was left behind" in output
    assert_clean(lab_name, seen, [])


def test_up_refuses_a_lab_that_is_already_up_and_down_is_idempotent(lab_name: str) -> None:
    assert lab(lab_name, "up", "--nodes", "1").returncode == 0
    again = lab(lab_name, "up", "--nodes", "1")
    assert again.returncode == 1 and "already up" in again.stderr
    assert lab(lab_name, "down").returncode == 0
    second = lab(lab_name, "down")
    assert second.returncode == 0 and "nothing to remove" in second.stdout
    absent = lab(lab_name, "exec", "node1", "--", "true")
    assert absent.returncode == 1 and "has no node node1" in absent.stderr
