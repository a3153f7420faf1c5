"""An in-memory N-node simulator running the real DHT core (STYLE.md 6, docs/dht.md).

One process, one event heap, one seeded `random.Random`: deterministic for a seed. Datagrams
are real signed envelopes, verified by the real decoder; the network drops them at random
(`loss`), delays them (`delay_s`), only delivers between nodes that share a management VPN
(`vpn_size`: VPN groups of that size, every node in `vpns_per_node` of them; 0 means one VPN
for all) and loses everything sent to a node that left (churn).

    .venv/bin/python -m rms.dht.sim --nodes 10000 --churn 0.2 --seed 1
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from rms.dht.node import DhtNode
from rms.dht.puzzle import grind_seed
from rms.dht.records import PEER, Record, parse_record, peer_fields, peer_key
from rms.dht.routing import distance
from rms.dht.types import Address, Contact, DhtConfig, LookupDone, Output, Send, SockAddr
from rms.identity import NodeIdentity

__all__ = ["SimConfig", "SimReport", "Simulator", "main"]

EPOCH = 1_700_000_000.0  # the simulated wall clock starts here


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One simulated run."""

    nodes: int = 500
    churn: float = 0.2  # fraction of nodes replaced after the records are stored
    seed: int = 1
    loss: float = 0.0
    delay_s: tuple[float, float] = (0.01, 0.05)
    vpn_size: int = 0  # 0: everyone shares one VPN
    vpns_per_node: int = 2
    records: int = 200  # peer records published
    lookups: int = 300
    puzzle_bits: int = 4  # keys are ground for real; 8 costs ~256 keygens per node
    join_spacing_s: float = 0.05
    republish: float = 0.0  # share of the records published again (higher seq) after churn
    collect_span: float = 1.0  # DhtConfig.collect_span: 0 ends a get at its first copy
    quorum: int = 2  # DhtConfig.quorum


@dataclass(slots=True)
class SimReport:
    """What a run measured."""

    nodes: int
    live: int
    lookups: int
    found: int
    recall: float
    rpcs_per_lookup: float
    ideal_rpcs_per_lookup: float
    rpc_ratio: float
    datagrams: int
    table_mean: float
    fresh: float  # of the records found, the share that were the newest (highest seq)
    copies_mean: float  # valid copies a get collected
    repaired: int  # stale replicas the gets stored the newest copy back to
    latency_p50_ms: float  # simulated time from start_get to its end
    latency_p95_ms: float
    seconds: dict[str, float] = field(default_factory=dict)


class Simulator:
    """N real cores over an in-memory network."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)  # noqa: S311 - seeded on purpose: replayable runs
        self.now = EPOCH
        self.nodes: list[DhtNode] = []
        self.alive: list[bool] = []
        self.vpns: list[tuple[bytes, ...]] = []
        self.where: dict[SockAddr, int] = {}
        self.members: dict[bytes, list[int]] = {}
        self.events: list[tuple[float, int, int, SockAddr, bytes]] = []  # deliveries
        self.timers: list[tuple[float, int, int]] = []
        self.scheduled: dict[int, float] = {}
        self.results: dict[tuple[int, int], LookupDone] = {}
        self.started: dict[tuple[int, int], float] = {}
        self.ended: dict[tuple[int, int], float] = {}
        self.datagrams = 0
        self._seq = 0
        n_vpns = (
            max(1, config.nodes * config.vpns_per_node // config.vpn_size) if config.vpn_size else 1
        )
        self.vpn_ids = [self.rng.randbytes(16) for _ in range(n_vpns)]

    # -- nodes --------------------------------------------------------------------------

    def add_node(self) -> int:
        """Create a node (its key solves the puzzle) and join it through its VPN peers."""
        index = len(self.nodes)
        seed = grind_seed(self.config.puzzle_bits, self.rng.randbytes)
        identity = NodeIdentity.from_seed(seed)
        vpns = self._pick_vpns()
        addresses = tuple(
            Address(v, f"10.{index >> 8 & 255}.{index & 255}.{1 + i}", 7947 + (index >> 16))
            for i, v in enumerate(vpns)
        )
        for a in addresses:
            self.where[a.sock] = index
        config = DhtConfig(
            addresses=addresses, puzzle_bits=self.config.puzzle_bits,
            collect_span=self.config.collect_span, quorum=self.config.quorum,
        )  # fmt: skip
        rng = random.Random(self.rng.getrandbits(64))  # noqa: S311 - seeded, replayable
        node = DhtNode(identity, config, rng, self.now)
        self.nodes.append(node)
        self.alive.append(True)
        self.vpns.append(vpns)
        seeds = self._seeds(index)
        for v in vpns:
            self.members.setdefault(v, []).append(index)
        self._handle(index, node.bootstrap(seeds, self.now))
        return index

    def _pick_vpns(self) -> tuple[bytes, ...]:
        if not self.config.vpn_size:
            return (self.vpn_ids[0],)
        count = min(self.config.vpns_per_node, len(self.vpn_ids))
        return tuple(self.rng.sample(self.vpn_ids, count))

    def _seeds(self, index: int) -> list[tuple[bytes, Sequence[Address]]]:
        # A joining node knows a few live members of its VPNs (their roster).
        pool = [i for v in self.vpns[index] for i in self.members.get(v, []) if self.alive[i]]
        chosen = self.rng.sample(pool, min(8, len(pool))) if pool else []
        return [(self.nodes[i].key, self.nodes[i].config.addresses) for i in chosen]

    def remove_node(self, index: int) -> None:
        """The node leaves without a word (churn)."""
        self.alive[index] = False

    # -- the network --------------------------------------------------------------------

    def _handle(self, index: int, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self._send(index, out)
            else:
                self.results[(index, out.op_id)] = out
                self.ended[(index, out.op_id)] = self.now
        self._arm(index)

    def _send(self, src: int, send: Send) -> None:
        self.datagrams += 1
        dst = self.where.get(send.addr)
        if dst is None or not self.alive[dst]:
            return
        src_vpns = self.vpns[src]
        dst_addr = next((a for a in self.nodes[dst].config.addresses if a.sock == send.addr), None)
        if dst_addr is None or dst_addr.vpn not in src_vpns:
            return  # no shared VPN: WireGuard would not carry it
        if self.rng.random() < self.config.loss:
            return
        src_addr = next(a.sock for a in self.nodes[src].config.addresses if a.vpn == dst_addr.vpn)
        low, high = self.config.delay_s
        self._seq += 1
        at = self.now + self.rng.uniform(low, high)
        heapq.heappush(self.events, (at, self._seq, dst, src_addr, send.data))

    def _arm(self, index: int) -> None:
        when = self.nodes[index].next_timer()
        if when is None or self.scheduled.get(index) == when:
            return
        self.scheduled[index] = when
        self._seq += 1
        heapq.heappush(self.timers, (when, self._seq, index))

    def run_until(self, deadline: float) -> None:
        """Process events up to simulated time `deadline`."""
        while True:
            t_event = self.events[0][0] if self.events else float("inf")
            t_timer = self.timers[0][0] if self.timers else float("inf")
            if min(t_event, t_timer) > deadline:
                self.now = deadline
                return
            if t_event <= t_timer:
                at, _, dst, src_addr, data = heapq.heappop(self.events)
                self.now = at
                if self.alive[dst]:
                    self._handle(dst, self.nodes[dst].datagram_received(data, src_addr, at))
            else:
                at, _, index = heapq.heappop(self.timers)
                if self.scheduled.get(index) != at or not self.alive[index]:
                    continue
                self.now = at
                del self.scheduled[index]
                self._handle(index, self.nodes[index].handle_timer(at))

    # -- the experiment -----------------------------------------------------------------

    def oracle(self, key: bytes) -> list[Contact]:
        """Ideal routing: the k closest live nodes to `key`, as if we knew every node."""
        live = [n for i, n in enumerate(self.nodes) if self.alive[i]]
        live.sort(key=lambda n: distance(n.node_id, key))
        return [Contact(n.key, n.node_id, n.config.addresses) for n in live[:20]]

    def start_get(self, origin: int, key: bytes, ideal: bool) -> tuple[int, int]:
        """Start one lookup from `origin`; its LookupDone lands in `results`."""
        node = self.nodes[origin]
        seeds = None
        if ideal:  # ideal routing: the live k closest, those we can reach directly
            seeds = [c for c in self.oracle(key) if node.reach.direct_addr(c) is not None]
        op_id, out = node.start_get(key, self.now, seeds)
        self.started[(origin, op_id)] = self.now
        self._handle(origin, out)
        return origin, op_id


def run(config: SimConfig) -> SimReport:
    """Join, publish, churn, look up; return the figures."""
    sim = Simulator(config)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    for _ in range(config.nodes):
        sim.add_node()
        sim.run_until(sim.now + config.join_spacing_s)
    sim.run_until(sim.now + 30)
    seconds["join"] = time.perf_counter() - started
    publishers = _publish(sim, config)
    seconds["publish"] = time.perf_counter() - started - seconds["join"]
    _churn(sim, config)
    if config.republish:
        _republish(sim, config, publishers)
    seconds["churn"] = time.perf_counter() - started - sum(seconds.values())
    got = _lookups(sim, config, [peer_key(sim.nodes[i].key) for i in publishers])
    seconds["lookups"] = time.perf_counter() - started - sum(seconds.values())
    live = [n for i, n in enumerate(sim.nodes) if sim.alive[i]]
    ours = got.rpcs / max(1, config.lookups)
    best = got.ideal_rpcs / max(1, config.lookups)
    newest = {r.key: r.seq for i in publishers for r in sim.nodes[i].own.values()}
    fresh = sum(1 for r in got.records if newest.get(r.key) == r.seq)
    return SimReport(
        nodes=config.nodes, live=len(live), lookups=config.lookups, found=len(got.records),
        recall=len(got.records) / max(1, config.lookups), rpcs_per_lookup=ours,
        ideal_rpcs_per_lookup=best, rpc_ratio=ours / best if best else 0.0,
        datagrams=sim.datagrams, table_mean=sum(len(n.table) for n in live) / len(live),
        fresh=fresh / max(1, len(got.records)),
        copies_mean=got.copies / max(1, config.lookups), repaired=got.repaired,
        latency_p50_ms=_percentile(got.latencies, 0.5) * 1000,
        latency_p95_ms=_percentile(got.latencies, 0.95) * 1000,
        seconds={k: round(v, 1) for k, v in seconds.items()},
    )  # fmt: skip


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _publish(sim: Simulator, config: SimConfig) -> list[int]:
    publishers = sim.rng.sample(range(len(sim.nodes)), min(config.records, len(sim.nodes)))
    _put_peer_records(sim, publishers)
    return publishers


def _put_peer_records(sim: Simulator, publishers: Sequence[int]) -> None:
    for index in publishers:
        node = sim.nodes[index]
        _, out = node.publish(PEER, peer_fields(node.config.addresses), sim.now)
        sim._handle(index, out)
        sim.run_until(sim.now + 0.02)
    sim.run_until(sim.now + 15)


def _republish(sim: Simulator, config: SimConfig, publishers: list[int]) -> None:
    # A newer record (higher seq) from some live publishers, stored on the k closest nodes
    # of today: the nodes that held the old one and are no longer among them keep it, stale.
    live = [i for i in publishers if sim.alive[i]]
    _put_peer_records(sim, sim.rng.sample(live, int(config.republish * len(live))))


def _churn(sim: Simulator, config: SimConfig) -> None:
    leaving = sim.rng.sample(range(len(sim.nodes)), int(config.churn * len(sim.nodes)))
    for index in leaving:
        sim.remove_node(index)
        sim.add_node()
        sim.run_until(sim.now + config.join_spacing_s)
    sim.run_until(sim.now + 30)


@dataclass(slots=True)
class _Gets:
    records: list[Record]  # what our lookups found (the ideal ones only count RPCs)
    rpcs: int
    ideal_rpcs: int
    copies: int
    repaired: int
    latencies: list[float]


def _lookups(sim: Simulator, config: SimConfig, keys: list[bytes]) -> _Gets:
    live = [i for i in range(len(sim.nodes)) if sim.alive[i]]
    asks = [(sim.rng.choice(live), sim.rng.choice(keys)) for _ in range(config.lookups)]
    phases = []
    for ideal in (False, True):
        started = [sim.start_get(origin, key, ideal) for origin, key in asks]
        sim.run_until(sim.now + sim.nodes[0].config.lookup_deadline_s + 2)
        phases.append([(s, sim.results.pop(s, None)) for s in started])
    ours = [(s, d.result) for s, d in phases[0] if d is not None]
    return _Gets(
        records=[parse_record(r.record) for _, r in ours if r.record is not None],
        rpcs=sum(r.rpcs for _, r in ours),
        ideal_rpcs=sum(d.result.rpcs for _, d in phases[1] if d is not None),
        copies=sum(r.copies for _, r in ours),
        repaired=sum(r.repaired for _, r in ours),
        latencies=[sim.ended[s] - sim.started[s] for s, _ in ours],
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator from the command line; the last line printed is JSON."""
    parser = argparse.ArgumentParser(prog="python -m rms.dht.sim", description=__doc__)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--churn", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--vpn-size", type=int, default=0)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument(
        "--republish", type=float, default=0.0,
        help="share of the records published again, with a higher seq, after the churn",
    )  # fmt: skip
    parser.add_argument(
        "--collect-span", type=float, default=1.0,
        help="x the first copy's round trip a get waits for more copies (0: first copy wins)",
    )  # fmt: skip
    parser.add_argument("--quorum", type=int, default=2, help="agreeing copies that end a get")
    args = parser.parse_args(argv)
    config = SimConfig(
        nodes=args.nodes, churn=args.churn, seed=args.seed, loss=args.loss,
        vpn_size=args.vpn_size, records=args.records, lookups=args.lookups,
        republish=args.republish, collect_span=args.collect_span, quorum=args.quorum,
    )  # fmt: skip
    report = run(config)
    sys.stdout.write(json.dumps(asdict(report)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
