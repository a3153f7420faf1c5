"""DHT bench: our DHT and the `kademlia` PyPI package side by side on real loopback sockets.

Both run the same experiment in the same private network namespace (needs root): N nodes
in one process, each on its own loopback address (`rms.dht.swarm.host_of`); they join in
order through a few earlier nodes, R random nodes store one record each, a share of the
nodes is stopped without a word (churn), then L gets of random stored keys from random
live nodes, 4 at a time, first without loss and then with nftables dropping LOSS % of all
datagrams. Ours is `python -m rms.dht.swarm` (the real cores behind the real adapter,
every datagram signed and verified); theirs is one `kademlia.network.Server` per address,
run by this file as `--worker kademlia`. The `kademlia` run is the baseline measured in the
same run: the ratios printed are ours over theirs. The bench never fails on a figure; its
last line is one JSON object with both sides' success rate and p50/p95 under loss.

    sudo .venv/bin/python bench/dht.py --nodes 500 --loss 5 --churn 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from kademlia.network import Server

from rms.dht.swarm import LossyLoopback, host_of, phase_options, run_phases

KADEMLIA_PORT = 8468
PHASE_TIMEOUT_S = 900.0
FIGURES = ("success_rate", "p50_ms", "p95_ms")


class KademliaSwarm:
    """`count` `kademlia.network.Server`s, one per loopback address, in this process."""

    def __init__(self, count: int, seed: int) -> None:
        self.rng = random.Random(seed)  # seeded on purpose: replayable runs
        random.seed(seed)  # kademlia draws node ids from the global generator
        self.servers = [Server(ksize=20, alpha=3) for _ in range(count)]
        self.live = list(range(count))

    async def start(self) -> None:
        """Bind every server's socket."""
        for index, server in enumerate(self.servers):
            await server.listen(KADEMLIA_PORT, interface=host_of(index))

    async def join(self, concurrency: int) -> None:
        """Bootstrap the servers in order, each through a few that came before it."""
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int) -> None:
            seeds = self.rng.sample(range(index), min(4, index))
            async with gate:
                await self.servers[index].bootstrap([(host_of(i), KADEMLIA_PORT) for i in seeds])

        await asyncio.gather(*(one(i) for i in range(1, len(self.servers))))

    async def publish(self, count: int, concurrency: int = 8) -> list[str]:
        """`count` random servers store one key each; returns the keys stored."""
        publishers = self.rng.sample(self.live, min(count, len(self.live)))
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int) -> str | None:
            key = f"peer/{index}"
            async with gate:
                stored = await self.servers[index].set(key, host_of(index))
            return key if stored else None

        keys = await asyncio.gather(*(one(i) for i in publishers))
        return [k for k in keys if k is not None]

    def stop(self, share: float) -> None:
        """Stop a random share of the live servers (churn)."""
        leaving = set(self.rng.sample(self.live, int(share * len(self.live))))
        for index in leaving:
            self.servers[index].stop()
        self.live = [i for i in self.live if i not in leaving]

    async def get(self, index: int, key: str) -> bool:
        """Server `index` gets `key`; whether it found a value."""
        return await self.servers[index].get(key) is not None

    def close(self) -> None:
        """Stop every server."""
        for server in self.servers:
            server.stop()


def run_side(net: LossyLoopback, command: list[str], loss: int) -> list[dict[str, object]]:
    """One DHT's two phases in the namespace: without loss, then with `loss` %."""
    net.set_loss(0)
    worker = net.start(command)
    clean = net.read_line(worker, PHASE_TIMEOUT_S)
    net.set_loss(loss)
    net.next_phase(worker)
    lossy = net.read_line(worker, PHASE_TIMEOUT_S)
    worker.wait(timeout=60)
    net.set_loss(0)
    return [clean, lossy]


def ratio(ours: object, theirs: object) -> str:
    """ours / theirs as text, or n/a."""
    a, b = float(str(ours)), float(str(theirs))
    return f"{a / b:.3f}" if b else "n/a"


def bench(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """Run both sides; print their figures and ratios; return the figures under loss."""
    common = ["--nodes", str(args.nodes), "--records", str(args.records)]
    common += ["--lookups", str(args.lookups), "--churn", str(args.churn), "--phases", "2"]
    common += ["--seed", str(args.seed)]
    here = str(Path(__file__).resolve())
    sides = {
        "ours": [sys.executable, "-m", "rms.dht.swarm", *common],
        "kademlia": [sys.executable, here, "--worker", "kademlia", *common],
    }
    results: dict[str, list[dict[str, object]]] = {}
    with LossyLoopback("dhtb") as net:
        for name, command in sides.items():
            results[name] = run_side(net, command, args.loss)
    for phase, label in ((0, "no loss"), (1, f"{args.loss} % loss")):
        for name in sides:
            line = results[name][phase]
            figures = " ".join(f"{k}={line[k]}" for k in (*FIGURES, "live", "stored", "join_s"))
            print(f"{label:>10} {name:>9}: {figures}")
        ours, theirs = results["ours"][phase], results["kademlia"][phase]
        said = " ".join(f"{k}={ratio(ours[k], theirs[k])}" for k in FIGURES)
        print(f"{label:>10}     ratio: ours/kademlia {said}")
    return {name: {k: lines[1][k] for k in FIGURES} for name, lines in results.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench (or, with --worker kademlia, one side of it)."""
    parser = phase_options("bench/dht.py", __doc__)
    parser.add_argument("--worker", choices=["kademlia"], help=argparse.SUPPRESS)
    parser.add_argument("--loss", type=int, default=5, help="percent, in the second phase")
    parser.set_defaults(nodes=500, churn=0.1, phases=2)
    args = parser.parse_args(argv)
    if args.worker == "kademlia":
        logging.disable(logging.ERROR)  # rpcudp logs every lost reply as an error
        asyncio.run(run_phases(KademliaSwarm(args.nodes, args.seed), args))
        return 0
    print(json.dumps(bench(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
