"""Helpers for the DHT unit tests: seeded identities that solve the puzzle, a tiny network."""

from __future__ import annotations

import random

from rms.dht.node import DhtNode
from rms.dht.puzzle import grind_seed
from rms.dht.types import Address, DhtConfig, LookupDone, Output, Send, SockAddr
from rms.identity import NodeIdentity

NOW = 1_700_000_000.0
VPN = bytes(16)
BITS = 4


def identity(seed: int, bits: int = BITS) -> NodeIdentity:
    """A seeded identity whose key solves a `bits` puzzle."""
    rng = random.Random(seed)
    return NodeIdentity.from_seed(grind_seed(bits, rng.randbytes))


def make_node(index: int, vpns: tuple[bytes, ...] = (VPN,), **tweaks: object) -> DhtNode:
    """Node `index` at 10.0.<index>.1 on each VPN."""
    addresses = tuple(Address(v, f"10.{i}.{index}.1", 7947) for i, v in enumerate(vpns))
    config = DhtConfig(addresses=addresses, puzzle_bits=BITS, **tweaks)  # type: ignore[arg-type]
    return DhtNode(identity(index), config, random.Random(index), NOW)


class Net:
    """Delivers every Send at once, in order, between the nodes that share a VPN."""

    def __init__(self, nodes: list[DhtNode]) -> None:
        self.nodes = nodes
        self.where: dict[SockAddr, DhtNode] = {a.sock: n for n in nodes for a in n.config.addresses}
        self.done: list[LookupDone] = []
        self.sent = 0
        self.now = NOW

    def run(self, sender: DhtNode, outputs: list[Output], now: float | None = None) -> None:
        """Deliver `outputs` of `sender` and all they cause, ticking timers until quiet."""
        self.now = max(self.now, now or NOW)
        self._deliver([(sender, o) for o in outputs])
        for _ in range(30):
            if not any(n.pending or n.ops for n in self.nodes):
                return
            self.now += 1.1
            for node in self.nodes:
                self._deliver([(node, o) for o in node.handle_timer(self.now)])

    def _deliver(self, queue: list[tuple[DhtNode, Output]]) -> None:
        now = self.now
        while queue:
            src, out = queue.pop(0)
            if isinstance(out, LookupDone):
                self.done.append(out)
                continue
            assert isinstance(out, Send)
            self.sent += 1
            dst = self.where.get(out.addr)
            if dst is None:
                continue
            shared = next((a for a in src.config.addresses if a.vpn in dst.config.vpns), None)
            if shared is None:
                continue
            queue += [(dst, o) for o in dst.datagram_received(out.data, shared.sock, now)]


def joined(count: int, join_refresh_below: int = 1) -> tuple[list[DhtNode], Net]:
    """`count` nodes, each joined through one earlier node picked by a seeded draw."""
    nodes = [make_node(i, join_refresh_below=join_refresh_below) for i in range(count)]
    net = Net(nodes)
    for i, node in enumerate(nodes[1:], 1):
        seed = nodes[random.Random(i).randrange(i)]
        net.run(node, node.bootstrap([(seed.key, seed.config.addresses)], net.now))
    return nodes, net
