"""Many DHT nodes on real UDP sockets in one asyncio process (tests and bench/dht.py).

Each node is a real `DhtNode` behind the real adapter (`rms.dht.adapter.serve`), bound to
its own loopback address `127.A.B.1` (one /24 each, so the per-subnet bucket limit treats
them as different networks) on the DHT's port. Nothing is faked: datagrams cross the
kernel's loopback, so nftables rules in the namespace the process runs in (loss) apply.

Run as a worker inside a network namespace, it speaks a line protocol on stdout/stdin so
that its parent can change the namespace's loss between phases:

    python -m rms.dht.swarm --nodes 300 --records 100 --lookups 300 --phases 2

prints one JSON line per phase (`{"phase": i, "success_rate", "p50_ms", "p95_ms", …}`)
after reading one line from stdin before each phase after the first. `LossyLoopback` is
the parent's side: a private namespace whose loopback drops a share of the datagrams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from rms.dht.adapter import DhtProtocol, serve
from rms.dht.node import DhtNode
from rms.dht.puzzle import grind_seed
from rms.dht.records import PEER, peer_fields, peer_key
from rms.dht.types import Address, DhtConfig, LookupDone, LookupResult, Output
from rms.identity import NodeIdentity

__all__ = [
    "LossyLoopback", "Nodes", "Swarm", "host_of", "percentile", "phase_options", "run_phases",
    "summary", "timed_gets",
]  # fmt: skip

PORT = 7947
GET_CONCURRENCY = 4  # gets in flight at once: all nodes share this process's CPU
VPN = bytes(16)  # every node in one management VPN: loopback stands for its mesh
JOIN_SEEDS = 4  # roster members a newcomer knows


def host_of(index: int) -> str:
    """Node `index`'s loopback address: a /24 of its own."""
    return f"127.{1 + index // 250}.{1 + index % 250}.1"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(latencies_s: Sequence[float], asked: int) -> dict[str, float]:
    """Success rate and p50/p95 in milliseconds of the successful gets."""
    return {
        "success_rate": round(len(latencies_s) / asked, 4) if asked else 0.0,
        "p50_ms": round(percentile(latencies_s, 0.5) * 1000, 2),
        "p95_ms": round(percentile(latencies_s, 0.95) * 1000, 2),
    }


@dataclass
class Member:
    """One node of the swarm and its socket."""

    node: DhtNode
    protocol: DhtProtocol | None = None
    transport: asyncio.DatagramTransport | None = None
    waiting: dict[int, asyncio.Future[LookupResult]] = field(default_factory=dict)

    def done(self, event: LookupDone) -> None:
        """The adapter's callback: resolve whoever waits for this operation."""
        future = self.waiting.pop(event.op_id, None)
        if future is not None and not future.done():
            future.set_result(event.result)


class Swarm:
    """`count` real nodes on loopback; seeded, so a run picks the same keys and askers."""

    def __init__(self, count: int, seed: int = 1, puzzle_bits: int = -1) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - seeded on purpose: replayable runs
        self.members: list[Member] = []
        for index in range(count):
            bits = puzzle_bits if puzzle_bits >= 0 else DhtConfig(addresses=()).bits
            identity = NodeIdentity.from_seed(grind_seed(bits, self.rng.randbytes))
            address = Address(VPN, host_of(index), PORT)
            config = DhtConfig(addresses=(address,), puzzle_bits=puzzle_bits)
            node_rng = random.Random(self.rng.getrandbits(64))  # noqa: S311 - seeded
            self.members.append(Member(DhtNode(identity, config, node_rng, time.time())))
        self.live = list(range(count))

    async def start(self) -> None:
        """Bind every node's socket."""
        for member in self.members:
            address = member.node.config.addresses[0]
            member.transport, member.protocol = await serve(
                member.node, address.host, address.port, member.done
            )

    async def join(self, concurrency: int, timeout_s: float = 30.0) -> None:
        """Join the nodes in order, each through a few that joined before it."""
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int) -> None:
            async with gate:
                await self._join_one(index, timeout_s)

        await asyncio.gather(*(one(i) for i in range(1, len(self.members))))

    async def _join_one(self, index: int, timeout_s: float) -> None:
        member = self.members[index]
        pool = self.rng.sample(range(index), min(JOIN_SEEDS, index))
        seeds = [(self.members[i].node.key, self.members[i].node.config.addresses) for i in pool]
        self._run(member, member.node.bootstrap(seeds, time.time()))
        deadline = time.monotonic() + timeout_s
        while member.node.ops and time.monotonic() < deadline:  # noqa: ASYNC110 - the core has no event to await
            await asyncio.sleep(0.05)

    def _run(self, member: Member, outputs: list[Output]) -> None:
        if member.protocol is not None:
            member.protocol.run(outputs)

    async def publish(self, count: int, concurrency: int = 8) -> list[bytes]:
        """Every one of `count` random nodes puts its peer record; returns the keys stored."""
        publishers = self.rng.sample(self.live, min(count, len(self.live)))
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int) -> bytes | None:
            node = self.members[index].node
            fields = peer_fields(node.config.addresses)
            async with gate:
                result = await self._op(index, *node.publish(PEER, fields, time.time()))
            return peer_key(node.key) if result is not None and result.stored else None

        keys = await asyncio.gather(*(one(i) for i in publishers))
        return [k for k in keys if k is not None]

    async def _op(self, index: int, op_id: int, outputs: list[Output]) -> LookupResult | None:
        member = self.members[index]
        future: asyncio.Future[LookupResult] = asyncio.get_running_loop().create_future()
        member.waiting[op_id] = future
        self._run(member, outputs)
        deadline = member.node.config.lookup_deadline_s + 5
        try:
            return await asyncio.wait_for(future, deadline)
        except TimeoutError:
            member.waiting.pop(op_id, None)
            return None

    def stop(self, share: float) -> list[int]:
        """Stop a random `share` of the live nodes without a word (churn)."""
        leaving = self.rng.sample(self.live, int(share * len(self.live)))
        for index in leaving:
            transport = self.members[index].transport
            if transport is not None:
                transport.close()
        gone = set(leaving)
        self.live = [i for i in self.live if i not in gone]
        return leaving

    async def get(self, index: int, key: bytes) -> bool:
        """Node `index` looks up the record under `key`; whether it found it."""
        node = self.members[index].node
        result = await self._op(index, *node.start_get(key, time.time()))
        return result is not None and result.ok and result.record is not None

    def close(self) -> None:
        """Close every socket."""
        for member in self.members:
            if member.transport is not None:
                member.transport.close()


class LossyLoopback:
    """A private network namespace (loopback up) with a settable random loss; needs root.

    Loss is one nftables rule on input, `numgen random mod 100 < PERCENT drop`: on loopback
    every datagram passes input once, so PERCENT % of all datagrams are lost.
    """

    def __init__(self, prefix: str = "dht") -> None:
        self.name = f"{prefix}{secrets.token_hex(4)}"
        self.procs: list[subprocess.Popen[str]] = []

    def __enter__(self) -> LossyLoopback:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def enter(self) -> list[str]:
        """The command prefix that runs a program in the namespace's network."""
        return ["nsenter", f"--net=/run/netns/{self.name}", "--"]

    def set_loss(self, percent: int) -> None:
        """Drop `percent` % of the datagrams from now on (0: none)."""
        table = "truecloud_dht_loss"
        script = f"table inet {table} {{}}\ndelete table inet {table}\n"
        if percent:
            script += (
                f"table inet {table} {{\n chain input {{\n"
                "  type filter hook input priority -300; policy accept;\n"
                f"  numgen random mod 100 < {percent} drop\n }}\n}}\n"
            )
        subprocess.run([*self.enter, "nft", "-f", "-"], input=script, text=True, check=True)

    def start(self, args: Sequence[str]) -> subprocess.Popen[str]:
        """Start a program in the namespace with pipes for the phase protocol."""
        proc = subprocess.Popen(
            [*self.enter, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.procs.append(proc)
        return proc

    @staticmethod
    def read_line(proc: subprocess.Popen[str], timeout_s: float) -> dict[str, object]:
        """The next JSON line a worker prints; raises TimeoutError or ValueError."""
        assert proc.stdout is not None  # started with a pipe above
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        line = proc.stdout.readline() if ready else ""
        if not line:
            raise TimeoutError(f"no line from the worker in {timeout_s} s (exit {proc.poll()})")
        value = json.loads(line)
        if not isinstance(value, dict):
            raise ValueError(f"the worker printed {line!r}, not a JSON object")
        return value

    @staticmethod
    def next_phase(proc: subprocess.Popen[str]) -> None:
        """Tell a worker to run its next phase."""
        assert proc.stdin is not None  # started with a pipe above
        proc.stdin.write("\n")
        proc.stdin.flush()

    def close(self) -> None:
        """Kill the workers still running and delete the namespace (nftables goes with it)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        self.procs.clear()
        subprocess.run(["ip", "netns", "delete", self.name], check=False, capture_output=True)


class Nodes(Protocol):
    """What `run_phases` drives: our swarm, or bench/dht.py's `kademlia` one."""

    rng: random.Random
    live: list[int]

    async def start(self) -> None: ...  # the methods of Swarm
    async def join(self, concurrency: int) -> None: ...
    async def publish(self, count: int) -> Sequence[Any]: ...
    def stop(self, share: float) -> object: ...
    async def get(self, index: int, key: Any) -> bool: ...
    def close(self) -> None: ...


async def timed_gets(
    nodes: Nodes, keys: Sequence[object], count: int, concurrency: int
) -> list[float]:
    """`count` gets of random keys from random live nodes; the latencies of the hits."""
    asks = [(nodes.rng.choice(nodes.live), nodes.rng.choice(keys)) for _ in range(count)]
    gate = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    async def one(index: int, key: object) -> float | None:
        async with gate:
            started = loop.time()
            found = await nodes.get(index, key)
            return loop.time() - started if found else None

    timed = await asyncio.gather(*(one(i, k) for i, k in asks))
    return [t for t in timed if t is not None]


async def run_phases(nodes: Nodes, args: argparse.Namespace) -> None:
    """Join, store, churn, then one JSON line of get figures per phase (see the module doc)."""
    started = time.monotonic()
    try:
        await nodes.start()
        await nodes.join(concurrency=32)
        joined = time.monotonic() - started
        keys = await nodes.publish(args.records)
        nodes.stop(args.churn)
        for phase in range(args.phases):
            if phase:
                await asyncio.to_thread(sys.stdin.readline)  # the parent changed the loss
            latencies = await timed_gets(nodes, keys, args.lookups, GET_CONCURRENCY)
            line: dict[str, object] = {"phase": phase, **summary(latencies, args.lookups)}
            line |= {"nodes": args.nodes, "live": len(nodes.live), "stored": len(keys)}
            line["join_s"] = round(joined, 1)
            print(json.dumps(line), flush=True)
    finally:
        nodes.close()


def phase_options(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The options of a phase worker (ours or bench/dht.py's)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--churn", type=float, default=0.0, help="share of nodes stopped")
    parser.add_argument("--phases", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a swarm, store records, stop some nodes, and time gets phase by phase."""
    args = phase_options("python -m rms.dht.swarm", __doc__).parse_args(argv)
    asyncio.run(run_phases(Swarm(args.nodes, args.seed), args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
