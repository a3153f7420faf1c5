"""An N-node simulator: the real gossip cores over an in-memory network (STYLE.md 6).

Nodes sit in overlapping management VPNs (full meshes of at most `vpn_size` members, each
node in `vpns_per_node` of them, drawn as that many random partitions of the nodes). Every
datagram pays a seeded delay and may be lost; before each broadcast a fresh `churn` share of
the nodes is down (its neighbours still list it, as stale rosters would); a partition cuts
every link between two halves of the nodes. Everything is seeded, so a run is repeatable.

Per broadcast it measures what the acceptance asks: the live nodes reached over the live
nodes reachable (must be 1.0), sends per node over its degree (must be at most 1), and
signature checks per delivered request (about 1). Real signatures, real verification.

    .venv/bin/python -m rms.gossip.sim --nodes 10000 --broadcasts 10 --seed 1
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rms.gossip.core import Gossip
from rms.gossip.events import AnswerReceived, Delivered, Output, Send
from rms.gossip.frames import is_push
from rms.identity import NodeIdentity
from rms.policy import DEFAULT
from rms.wire.messages.gossip import RequestBody

__all__ = ["BroadcastResult", "SimConfig", "Simulation", "build_vpns", "main"]

START = 1_700_000_000.0  # wall-clock seconds: the wire checks origin times against it


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One simulated cloud and the conditions of its network."""

    nodes: int = 1000
    vpn_size: int = 8
    vpns_per_node: int = 2
    loss: float = 0.05
    delay_s: tuple[float, float] = (0.005, 0.050)
    churn: float = 0.2
    partition: bool = False
    answers: int = 3  # nodes that answer each broadcast
    seed: int = 1


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    """What one broadcast did."""

    live: int  # live nodes other than the origin
    reachable: int  # of those, connected to the origin over live nodes and uncut links
    reached: int  # of those, delivered the request
    max_send_ratio: float  # the largest sends / degree of any node
    sends_per_node: float  # mean over live nodes
    checks_per_delivery: float  # signature checks / deliveries, over all nodes
    answers_sent: int
    answers_received: int
    duration_s: float  # simulated time until the network went quiet

    @property
    def coverage(self) -> float:
        """Reached over reachable live nodes."""
        return self.reached / self.reachable if self.reachable else 1.0


def build_vpns(nodes: int, size: int, per_node: int, rng: random.Random) -> list[list[int]]:
    """`per_node` random partitions of the nodes into VPNs of at most `size` members."""
    vpns: list[list[int]] = []
    for _ in range(per_node):
        order = list(range(nodes))
        rng.shuffle(order)
        vpns += [order[i : i + size] for i in range(0, nodes, size)]
    return vpns


class Simulation:
    """A deterministic cloud of `Gossip` cores."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)  # noqa: S311 - seeded on purpose: replayable runs
        seeds = [self.rng.randbytes(32) for _ in range(config.nodes)]
        self.identities = [NodeIdentity.from_seed(s) for s in seeds]
        self.index = {ident.public_key: i for i, ident in enumerate(self.identities)}
        self.cores = [
            Gossip(ident, random.Random(config.seed * 7919 + i), DEFAULT, START)  # noqa: S311
            for i, ident in enumerate(self.identities)
        ]
        self.vpns = build_vpns(config.nodes, config.vpn_size, config.vpns_per_node, self.rng)
        self.neighbours: list[set[int]] = [set() for _ in range(config.nodes)]
        for number, members in enumerate(self.vpns):
            vpn_id = uuid.UUID(int=number + 1)
            keys = [self.identities[m].public_key for m in members]
            for m in members:
                self.cores[m].set_neighbours(vpn_id, keys)
                self.neighbours[m].update(x for x in members if x != m)
        self.now = START
        self.live: list[bool] = [True] * config.nodes
        self._queue: list[tuple[float, int, int, bytes, uuid.UUID, bytes]] = []
        self._seq = 0

    def _cut(self, a: int, b: int) -> bool:
        half = self.config.nodes // 2
        return self.config.partition and (a < half) != (b < half)

    def _schedule(self, src: int, outputs: Sequence[Output], sends: Counter[int]) -> None:
        low, high = self.config.delay_s
        for out in outputs:
            if not isinstance(out, Send):
                continue
            if is_push(out.data):  # answers are not broadcast traffic
                sends[src] += 1
            dst = self.index[out.to_peer]
            if self.rng.random() < self.config.loss or self._cut(src, dst):
                continue
            self._seq += 1
            at = self.now + self.rng.uniform(low, high)
            key = self.identities[src].public_key
            heapq.heappush(self._queue, (at, self._seq, dst, key, out.vpn_id, out.data))

    def _churn(self) -> None:
        down = set(
            self.rng.sample(range(self.config.nodes), int(self.config.churn * len(self.cores)))
        )
        self.live = [i not in down for i in range(self.config.nodes)]

    def _reachable(self, origin: int) -> int:
        seen = {origin}
        frontier = [origin]
        while frontier:
            node = frontier.pop()
            for nb in self.neighbours[node]:
                if nb not in seen and self.live[nb] and not self._cut(node, nb):
                    seen.add(nb)
                    frontier.append(nb)
        return len(seen) - 1

    def broadcast(self) -> BroadcastResult:
        """Churn, then one broadcast from a random live node, run until the network is quiet."""
        self._churn()
        origin = self.rng.choice([i for i in range(self.config.nodes) if self.live[i]])
        before = [(c.counts["signature_checks"], c.counts["delivered"]) for c in self.cores]
        core = self.cores[origin]
        body = RequestBody(core.new_request_id(), "storage", 10**12, DEFAULT.gossip_max_hops)
        sends: Counter[int] = Counter()
        start = self.now
        self._schedule(origin, core.broadcast(body, self.now), sends)
        reached, answered = self._run(sends)
        return self._result(
            origin,
            before=before,
            sends=sends,
            reached=reached,
            answered=answered,
            duration=self.now - start,
        )

    def _run(self, sends: Counter[int]) -> tuple[set[int], int]:
        reached: set[int] = set()
        answering = self.config.answers
        answered = 0
        while self._queue:
            at, _, dst, src, vpn_id, data = heapq.heappop(self._queue)
            self.now = at
            if not self.live[dst]:
                continue
            outputs = self.cores[dst].datagram_received(data, src, vpn_id, at)
            extra: list[Output] = []
            for out in outputs:
                if isinstance(out, Delivered):
                    reached.add(dst)
                    if answering > 0:
                        answering -= 1
                        extra += self.cores[dst].answer(out.request, _offer(), at)
                elif isinstance(out, AnswerReceived):
                    answered += 1
            self._schedule(dst, [*outputs, *extra], sends)
        return reached, answered

    def _result(
        self,
        origin: int,
        *,
        before: list[tuple[int, int]],
        sends: Counter[int],
        reached: set[int],
        answered: int,
        duration: float,
    ) -> BroadcastResult:
        checks = sum(
            c.counts["signature_checks"] - b[0] for c, b in zip(self.cores, before, strict=True)
        )
        delivered = sum(
            c.counts["delivered"] - b[1] for c, b in zip(self.cores, before, strict=True)
        )
        live = [i for i in range(self.config.nodes) if self.live[i]]
        ratios = [sends[i] / max(1, len(self.neighbours[i])) for i in live]
        answers = min(self.config.answers, len(reached))
        self.now += 1.0  # let the next broadcast start on a quiet network
        for c in self.cores:
            c.handle_timer(self.now)
        return BroadcastResult(
            live=len(live) - 1,
            reachable=self._reachable(origin),
            reached=len(reached),
            max_send_ratio=max(ratios, default=0.0),
            sends_per_node=sum(sends[i] for i in live) / len(live),
            checks_per_delivery=checks / max(1, delivered),
            answers_sent=answers,
            answers_received=answered,
            duration_s=duration,
        )


def _offer() -> dict[str, object]:
    return {"amount": 10**12, "addresses": []}


def main(argv: Sequence[str] | None = None) -> int:
    """Run broadcasts over a simulated cloud and print one JSON line per broadcast."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=5)
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--churn", type=float, default=0.2)
    parser.add_argument("--partition", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    config = SimConfig(
        nodes=args.nodes,
        loss=args.loss,
        churn=args.churn,
        partition=args.partition,
        seed=args.seed,
    )
    sim = Simulation(config)
    results = [sim.broadcast() for _ in range(args.broadcasts)]
    for result in results:
        print(json.dumps({**asdict(result), "coverage": result.coverage}))
    worst = min(r.coverage for r in results)
    print(json.dumps({"nodes": config.nodes, "broadcasts": len(results), "worst_coverage": worst}))
    return 0 if worst == 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
