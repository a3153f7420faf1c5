"""300 real DHT nodes on real UDP sockets, in a private network namespace (issue 4).

One worker process (`python -m rms.dht.swarm`) runs 300 cores behind the real asyncio
adapter, one loopback address each, inside a namespace of the test's own. They join, 100
of them store their peer records, then 300 gets of random records from random nodes run
without loss (every one must succeed) and again after nftables drops 5 % of all datagrams
(>= 99 % must succeed). The namespace goes, with its rule and the worker, whatever happens.
Last, bench/dht.py at tiny size: both DHTs run and its last line has the promised shape.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rms.dht.swarm import LossyLoopback

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "nsenter")),
    reason="needs root, iproute2, nftables and nsenter",
)

NODES = 300
PHASE_TIMEOUT_S = 240.0


def test_300_nodes_find_every_record_and_99_percent_under_5_percent_loss() -> None:
    with LossyLoopback("dhtlb") as net:
        args = ["--nodes", str(NODES), "--records", "100", "--lookups", "300", "--phases", "2"]
        worker = net.start([sys.executable, "-m", "rms.dht.swarm", *args])
        clean = net.read_line(worker, PHASE_TIMEOUT_S)
        net.set_loss(5)
        net.next_phase(worker)
        lossy = net.read_line(worker, PHASE_TIMEOUT_S)
        assert worker.wait(timeout=30) == 0
    print(f"\n{NODES} nodes, no loss: {clean}\n{NODES} nodes, 5 % loss: {lossy}")
    assert clean["live"] == NODES and clean["stored"] == 100, clean
    assert clean["success_rate"] == 1.0, clean
    assert isinstance(lossy["success_rate"], float) and lossy["success_rate"] >= 0.99, lossy
    assert 0 < float(str(clean["p50_ms"])) <= float(str(clean["p95_ms"])), clean


def test_the_namespace_and_its_worker_are_gone_after_a_failure() -> None:
    with pytest.raises(TimeoutError), LossyLoopback("dhtlb") as net:
        name = net.name
        # A worker that never prints: the read times out, the namespace must still go.
        worker = net.start([sys.executable, "-c", "import time; time.sleep(60)"])
        net.read_line(worker, 0.5)
    assert worker.poll() is not None
    assert not os.path.exists(f"/run/netns/{name}")


def test_the_bench_runs_both_dhts_at_tiny_size_and_ends_with_its_json_line() -> None:
    bench = Path(__file__).resolve().parents[2] / "bench" / "dht.py"
    args = ["--nodes", "20", "--records", "5", "--lookups", "10", "--churn", "0.1"]
    done = subprocess.run(
        [sys.executable, str(bench), *args], check=False, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(last) == {"ours", "kademlia"}
    for side in last.values():
        assert set(side) == {"success_rate", "p50_ms", "p95_ms"}
        assert 0.0 <= side["success_rate"] <= 1.0 and side["p50_ms"] <= side["p95_ms"]
    assert "ratio: ours/kademlia" in done.stdout
