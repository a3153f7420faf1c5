"""The DHT in the 12-node lab over real WireGuard: issue 4's lookup acceptance.

12 nodes and 3 mirrors start from nothing and join their management VPNs. Once every
node's DHT listens on all its management addresses and has put its peer record, every node
looks up the peer record of every other node, including those it shares no VPN with (the
relay carries those): all must succeed. Then every node drops 5 % of its incoming packets
(`rms lab loss`, nftables) and the same lookups run twice: at least 99 % must succeed. The
p50 and p95 of the lookup times, as the daemons measure them, are printed.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
from collections import Counter
from typing import Any

import pytest

from rms.control.client import ControlClient, ControlError, DaemonUnavailable
from rms.lab.layout import lab_paths
from rms.lab.status import control_socket
from tests.lab.support import lab, node_statuses, status_json
from tests.lab.test_vpns import CONVERGE_S, Statuses, all_joined, wait_for

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.timeout(900),
]

NODES = 12
LOSS = 5
PER_NODE = 1  # lookups one node runs at once (12 in the lab at a time)
DHT_READY_S = 120.0


def dht_ready(count: int) -> Any:
    """Every node's DHT listens on each of its VPN addresses and has stored its peer record."""

    def check(statuses: Statuses) -> bool:
        if not all_joined(count, 2)(statuses):
            return False
        for status in statuses.values():
            dht = status.get("dht", {})
            if len(dht.get("listening", [])) != len(status["vpns"]):
                return False
            if dht.get("puts", {}).get("ok", 0) < 1 or dht.get("routing_table", 0) < 2:
                return False
        return True

    return check


Outcome = tuple[bool, bool, float, bool]  # found, current, elapsed ms, across VPNs


async def lookup_all(pids: dict[str, int], statuses: Statuses) -> list[Outcome]:
    """From every node, the peer record of every other node (PER_NODE at a time per node)."""
    keys = {n: s["dht"]["public_key"] for n, s in statuses.items()}
    hosts = {n: {v["address"] for v in s["vpns"]} for n, s in statuses.items()}
    vpns = {n: {v["uuid"] for v in s["vpns"]} for n, s in statuses.items()}

    async def one(
        gate: asyncio.Semaphore, client: ControlClient, node: str, target: str
    ) -> Outcome:
        apart = not vpns[node] & vpns[target]  # the relay carries these
        async with gate:
            try:
                answer = await client.post_json("/v1/dht/get", {"public_key": keys[target]})
            except (DaemonUnavailable, ControlError):
                return False, False, float("nan"), apart
        record = answer.get("record") or {}
        found = bool(answer.get("found")) and record.get("publisher") == keys[target]
        listed = {host for _, host, _ in record.get("fields", {}).get("addrs", [])}
        return found, found and listed == hosts[target], float(answer["elapsed_ms"]), apart

    work = []
    for node, pid in pids.items():
        gate, client = asyncio.Semaphore(PER_NODE), ControlClient(control_socket(pid), 30.0)
        work += [one(gate, client, node, target) for target in pids if target != node]
    return list(await asyncio.gather(*work))


def summary(label: str, outcomes: list[Outcome]) -> tuple[float, str]:
    """The success rate and a line with it, the current-record rate and p50/p95."""
    ok = [o for o in outcomes if o[0]]
    times = sorted(o[2] for o in ok)
    cuts = statistics.quantiles(times, n=20) if len(times) >= 2 else [float("nan")] * 19
    rate = len(ok) / len(outcomes)
    current = sum(o[1] for o in ok)
    apart = [o for o in outcomes if o[3]]
    line = (
        f"{label}: {len(ok)}/{len(outcomes)} found ({rate:.1%}; across VPNs "
        f"{sum(o[0] for o in apart)}/{len(apart)}), {current} with every VPN address, "
        f"p50 {statistics.median(times):.1f} ms, p95 {cuts[18]:.1f} ms"
    )
    return rate, line


def set_loss_everywhere(name: str, percent: int) -> None:
    for index in range(1, NODES + 1):
        done = lab(name, "loss", f"node{index}", str(percent))
        assert done.returncode == 0, done.stdout + done.stderr


def loss_rules(name: str, node: str) -> list[str]:
    """The drop rules of the loss table inside a node, as nft lists them."""
    netns = f"/run/netns/{lab_paths(name).netns(node)}"
    listed = subprocess.run(
        ["nsenter", f"--net={netns}", "--", "nft", "list", "ruleset"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.strip() for line in listed.splitlines() if "numgen" in line]


def test_every_node_finds_every_peer_record_with_and_without_loss(lab_name: str) -> None:
    up = lab(lab_name, "up", "--nodes", str(NODES), "--mirrors", "3")
    assert up.returncode == 0, up.stdout + up.stderr
    wait_for(lab_name, all_joined(NODES, 2), CONVERGE_S)
    statuses = wait_for(lab_name, dht_ready(NODES), DHT_READY_S)
    _, lab_status = status_json(lab_name)
    pids = {n["name"]: n["pid"] for n in lab_status["nodes"]}

    clean = asyncio.run(lookup_all(pids, statuses))
    rate, line = summary("no loss", clean)
    print(f"\nDHT lab, {NODES} nodes over WireGuard: {line}")
    assert rate == 1.0, line

    # The CLI path: a node id (not a key) is found first, then its peer record.
    target = statuses["node12"]["node_id"]
    peer = lab(lab_name, "exec", "node1", "--", "rms", "dht", "peer", target)
    assert peer.returncode == 0 and f"peer {target[:16]}" in peer.stdout, peer.stdout + peer.stderr

    set_loss_everywhere(lab_name, LOSS)
    set_loss_everywhere(lab_name, LOSS)  # idempotent: still one rule per node
    rules = loss_rules(lab_name, "node1")
    assert len(rules) == 1 and f"numgen random mod 100 < {LOSS}" in rules[0], rules
    lossy = asyncio.run(lookup_all(pids, statuses)) + asyncio.run(lookup_all(pids, statuses))
    rate, line = summary(f"{LOSS} % loss", lossy)
    print(f"DHT lab, {NODES} nodes over WireGuard: {line}")
    assert rate >= 0.99, line
    assert "packets 0 bytes" not in loss_rules(lab_name, "node1")[0]  # it did drop

    set_loss_everywhere(lab_name, 0)
    assert loss_rules(lab_name, "node1") == []
    dht = [s["dht"] for s in node_statuses(lab_name).values()]
    dropped: Counter[str] = Counter()
    for section in dht:
        dropped.update(section["dropped"])
    relayed = sum(section["relayed"] for section in dht)
    print(f"DHT lab: {relayed} requests relayed across VPNs; counted and dropped: {dict(dropped)}")
