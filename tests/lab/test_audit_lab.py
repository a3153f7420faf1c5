"""Audits across real daemons in the lab (issue 6 acceptance, the part the lab can show today).

Five lab nodes: node1 is a provider that silently drops 10 % of the writes it is sent, node2 an
honest provider, node3-node5 are clients. Each round every client writes blocks to both
providers, reads 16 at random back and compares (rms.audit.report.BlockLog), has its own
daemon sign the report with its node key (`POST /v1/audits/sign`), and the report is handed to
every other node (`POST /v1/audits/reports`), standing in for the DHT publication that is not
wired yet. The providers' disks are in-test block stores: the Volume Provider's real export
path is the storage issue's. Every node must see node1 warned within 2 rounds with a falling
score, node2 untouched, and node1 itself must say so in its status; one client's false report
against node2 must change nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

import pytest

from rms.audit.report import BlockLog, make_body
from rms.control.client import ControlClient
from rms.lab.status import control_socket
from tests.lab.support import lab, node_statuses, status_json

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.timeout(600),
]

NODES = 5
PROVIDERS = ("node1", "node2")
CLIENTS = ("node3", "node4", "node5")
DROP = {"node1": 0.1, "node2": 0.0}


def ready(name: str, timeout: float = 180) -> tuple[dict[str, int], dict[str, str]]:
    """Pids and node public keys, once every node reports its audits and DHT sections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = node_statuses(name)
        if len(statuses) >= NODES and all("audits" in s and "dht" in s for s in statuses.values()):
            keys = {n: s["dht"]["public_key"] for n, s in statuses.items()}
            pids = {n["name"]: n["pid"] for n in status_json(name)[1]["nodes"]}
            return pids, keys
        time.sleep(2)
    raise AssertionError("not every node reported audits and dht sections")


class Round:
    """The clients' block logs and the providers' disks, kept across rounds."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys
        self.rng = random.Random(6)
        self.logs = {(c, p): BlockLog() for c in CLIENTS for p in PROVIDERS}
        self.disks: dict[str, dict[tuple[str, int], bytes]] = {p: {} for p in PROVIDERS}
        self.written = 0

    def audit(self, client: str, provider: str) -> tuple[int, int]:
        log = self.logs[client, provider]
        for _ in range(32):
            data = self.rng.randbytes(64)
            log.wrote(self.written, data)
            if self.rng.random() >= DROP[provider]:
                self.disks[provider][client, self.written] = data
            self.written += 1
        picked = log.challenge(self.rng, 16)
        return log.judge({b: self.disks[provider].get((client, b)) for b in picked})

    def body(self, client: str, provider: str, number: int, checked: int, failed: int) -> Any:
        return make_body(bytes.fromhex(self.keys[client]), bytes.fromhex(self.keys[provider]),
                         f"vol-{client}", round_=number, at=int(time.time()), kind="read",
                         checked=checked, failed=failed)  # fmt: skip


async def publish(clients: dict[str, ControlClient], signer: str, body: Any) -> None:
    """Sign with the auditor's own daemon, then hand the report to every other node."""
    signed = (await clients[signer].post_json("/v1/audits/sign", {"body": body}))["report"]
    await asyncio.gather(
        *(c.post_json("/v1/audits/reports", signed) for n, c in clients.items() if n != signer)
    )


async def standings(clients: dict[str, ControlClient], key: str) -> dict[str, dict[str, Any]]:
    answers = await asyncio.gather(*(c.get_json("/v1/audits") for c in clients.values()))
    out = {}
    for node, answer in zip(clients, answers, strict=True):
        found = [s for s in answer["standings"] if s["provider"] == key]
        out[node] = found[0] if found else {"standing": "ok", "score": 1.0}
    return out


def test_a_dropping_provider_is_caught_and_an_honest_one_is_not(lab_name: str) -> None:
    assert lab(lab_name, "up", "--nodes", str(NODES)).returncode == 0
    pids, keys = ready(lab_name)
    clients = {n: ControlClient(control_socket(pid), 30.0) for n, pid in pids.items()}
    world = Round(keys)

    async def run() -> int:
        await publish(clients, "node3", world.body("node3", "node2", 1, 16, 16))  # a false report
        caught = 0
        for number in range(2, 8):
            for client in CLIENTS:
                for provider in PROVIDERS:
                    checked, failed = world.audit(client, provider)
                    await publish(clients, client, world.body(client, provider, number,
                                                              checked, failed))  # fmt: skip
            bad = await standings(clients, keys["node1"])
            if not caught and all(s["standing"] == "warned" for s in bad.values()):
                caught = number
        return caught

    caught = asyncio.run(run())
    assert 2 <= caught <= 3, "node1 was not warned by every node within 2 rounds"
    bad = asyncio.run(standings(clients, keys["node1"]))
    good = asyncio.run(standings(clients, keys["node2"]))
    assert all(s["score"] < 0.5 for s in bad.values())
    assert all(s["standing"] == "ok" for s in good.values())
    own = node_statuses(lab_name)["node1"]
    assert own["state"] == "degraded"
    assert any(p.startswith("audits: clients report failed audits") for p in own["problems"])
