"""The DHT as a daemon service: the core on UDP port 7947 of every management address.

The node is in 1 to 4 management VPNs and has one address in each (rms.overlay). The
service binds one UDP socket per address, so the DHT never listens on the node's public
address, and sends each datagram through the socket of the VPN its destination lives in.
Every `SYNC_S` it reads the node's VPNs (their addresses and roster members) and follows
joins and leaves: it opens and closes sockets, tells the core its addresses, bootstraps
through members it does not know yet, and publishes the node's peer record whenever its
addresses change (the core re-signs and re-stores it every `dht_republish_s`). Lookups
started through the control API wait here for the core's `LookupDone`. What to send and
when is the core's decision (STYLE.md 2). docs/dht.md, "In the daemon".
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Network, ip_address
from pathlib import Path
from typing import Any, cast

import structlog

from rms.dht import seqfile
from rms.dht.node import DhtNode
from rms.dht.ops import with_held
from rms.dht.puzzle import grind_seed, satisfies
from rms.dht.records import (
    PROVIDER,
    RecordError,
    parse_record,
    peer_fields,
    peer_key,
    provider_fields,
    provider_key,
    sign_record,
)
from rms.dht.types import Address, DhtConfig, LookupDone, LookupResult, Output, Send
from rms.identity import NodeIdentity, node_id_of
from rms.overlay import member_address, member_network
from rms.policy import DEFAULT, Policy

__all__ = [
    "DHT_PORT",
    "DhtBusy",
    "DhtService",
    "VpnView",
    "member_dht_address",
    "new_node_seed",
    "udp_open",
]

DHT_PORT = 7947  # UDP; the roster RPC uses TCP 7947 on the same addresses
SYNC_S = 2.0  # how often the VPN views are read (joins, leaves, roster changes)
RESEED_S = 30.0  # a member that did not answer a bootstrap is tried again after this
REPUBLISH_RETRY_S = 10.0  # a peer record no node accepted is put again after this
MAX_WAITING = 256  # lookups the control API may have in flight at once
WAIT_MARGIN_S = 5.0  # beyond the core's lookup deadline, in case a timer tick is late

log = structlog.get_logger("rms.dht")

Opener = Callable[[str, int, asyncio.DatagramProtocol], Awaitable[asyncio.DatagramTransport]]


class DhtBusy(Exception):
    """Too many lookups are in flight; the caller may retry later."""


@dataclass(frozen=True, slots=True)
class VpnView:
    """What the DHT needs of one management VPN this node is in."""

    vpn_id: uuid.UUID
    address: str  # this node's management address in the VPN
    members: tuple[bytes, ...]  # the other members' node keys, from the roster
    # member key -> the network UUID the guardian-signed roster lists for it: the origin
    # the DHT's per-origin limits count the member against (docs/dht.md, "Origins")
    networks: Mapping[bytes, uuid.UUID] = field(default_factory=dict)


def member_dht_address(vpn_id: uuid.UUID, key: bytes) -> Address:
    """Where a member of `vpn_id` with node key `key` listens for the DHT."""
    return Address(vpn_id.bytes, str(member_address(vpn_id, node_id_of(key)).ip), DHT_PORT)


def new_node_seed(policy: Policy = DEFAULT) -> bytes:
    """The seed of a new node key that solves the DHT's key puzzle (S/Kademlia 4.1)."""
    return grind_seed(policy.dht_puzzle_bits, os.urandom)


async def udp_open(
    host: str, port: int, protocol: asyncio.DatagramProtocol
) -> asyncio.DatagramTransport:
    """Bind a UDP socket at (host, port) for `protocol`."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: protocol, local_addr=(host, port))
    return transport


class _Socket(asyncio.DatagramProtocol):
    """One bound address: hands datagrams to the service."""

    def __init__(self, service: DhtService) -> None:
        self.service = service

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        # One spelling for the core's address comparisons, without an IPv6 zone.
        host = str(ip_address(str(addr[0]).split("%", 1)[0]))
        self.service.received(data, (host, int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        self.service.counters["send_errors"] += 1  # ICMP for an earlier send


@dataclass(slots=True)
class _Bound:
    address: str
    network: IPv6Network
    transport: asyncio.DatagramTransport


class DhtService:
    """Runs one `DhtNode` on the node's management addresses."""

    def __init__(
        self,
        identity: NodeIdentity,
        views: Callable[[], Sequence[VpnView]],
        *,
        policy: Policy = DEFAULT,
        port: int = DHT_PORT,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        opener: Opener = udp_open,
        state_dir: Path | None = None,
    ) -> None:
        self._clock = clock  # wall clock: envelopes and records carry UNIX times
        config = DhtConfig(addresses=(), policy=policy)
        self.core = DhtNode(identity, config, rng or random.SystemRandom(), clock())
        self.identity = identity
        self.port = port
        self.puzzle_solved = satisfies(identity.public_key, config.bits)
        self.counters: Counter[str] = Counter()
        self._views = views
        self._opener = opener
        self._bound: dict[uuid.UUID, _Bound] = {}
        self._seeded: dict[bytes, float] = {}  # member key -> when we last bootstrapped via it
        self._waiting: dict[int, asyncio.Future[LookupResult] | None] = {}  # None: ours
        self._published: tuple[Address, ...] = ()  # in our peer record
        self._published_size = 0  # our routing table's size when we last put it
        # When no node took it: try again at this time, or once the table has grown.
        self._publish_again: tuple[float, int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._log = log.bind(node_id=identity.node_id_hex[:16])
        self._origins: tuple[object, ...] = ()  # the views' networks the core was given
        self._seqs = seqfile.SeqKeeper(state_dir, self.core.seqs, self._log, self.counters)
        if not self.puzzle_solved:
            self._log.warning("dht.key_fails_puzzle", bits=config.bits)

    async def run(self) -> None:
        """Follow the node's VPNs until cancelled; every socket is closed on the way out."""
        try:
            while True:
                await self.sync()
                await asyncio.sleep(SYNC_S)
        finally:
            self.close()

    def close(self) -> None:
        """Close every socket and the timer; lookups still waiting fail."""
        for vpn_id in list(self._bound):
            self._unbind(vpn_id)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for future in self._waiting.values():
            if future is not None and not future.done():
                future.cancel()

    # -- following the VPNs -----------------------------------------------------------------

    async def sync(self) -> None:
        """Bring sockets, addresses, bootstrap and our peer record in line with the VPNs."""
        views = {v.vpn_id: v for v in self._views()}
        for vpn_id, bound in list(self._bound.items()):
            view = views.get(vpn_id)
            if view is None or view.address != bound.address:
                self._unbind(vpn_id)
        for view in views.values():
            if view.vpn_id not in self._bound:
                await self._bind(view)
        addresses = tuple(
            Address(vpn_id.bytes, b.address, self.port) for vpn_id, b in sorted(self._bound.items())
        )
        if addresses != self.core.config.addresses:
            self.core.set_addresses(addresses)
            self._log.info("dht.addresses", vpns=len(addresses))
        self._set_origins(list(views.values()))
        now = self._clock()
        self._bootstrap([views[v] for v in self._bound], now)
        self._publish_peer(addresses, now)

    async def _bind(self, view: VpnView) -> None:
        try:
            transport = await self._opener(view.address, self.port, _Socket(self))
        except OSError as e:  # the address is not up yet (a new interface): next sync
            self.counters["bind_retries"] += 1
            self._log.debug("dht.bind_failed", vpn=str(view.vpn_id), error=e.strerror)
            return
        self._bound[view.vpn_id] = _Bound(view.address, member_network(view.vpn_id), transport)
        self._rearm()

    def _unbind(self, vpn_id: uuid.UUID) -> None:
        bound = self._bound.pop(vpn_id)
        bound.transport.close()

    def _set_origins(self, views: Sequence[VpnView]) -> None:
        # Only the rosters of our own VPNs vouch for a network: every other address counts
        # as its own /48 (a VPN), so an unknown node never adds an origin.
        seen = tuple((v.vpn_id, tuple(sorted(v.networks.items()))) for v in views)
        if seen == self._origins:
            return
        self._origins = seen
        origins = {
            member_dht_address(v.vpn_id, key).host: str(network)
            for v in views
            for key, network in v.networks.items()
        }
        self.core.set_origins(origins)

    def _bootstrap(self, views: Sequence[VpnView], now: float) -> None:
        # Through roster members the routing table lacks, each at most every RESEED_S.
        seeds = []
        for view in views:
            for key in view.members:
                known = self.core.table.get(node_id_of(key)) is not None
                if known or now - self._seeded.get(key, -RESEED_S) < RESEED_S:
                    continue
                self._seeded[key] = now
                seeds.append((key, [member_dht_address(view.vpn_id, key)]))
        if seeds:
            self._apply(self.core.bootstrap(seeds, now))

    def _publish_peer(self, addresses: tuple[Address, ...], now: float) -> None:
        # The core re-signs and re-stores it every dht_republish_s. Until then a young
        # cloud grows: put it again whenever our table has doubled, so that it reaches the
        # nodes closest to its key (at most log2(N) extra puts), and after a failed put.
        size, retry = len(self.core.table), self._publish_again
        again = retry is not None and (now >= retry[0] or size > retry[1])
        grown = size >= 2 * max(self._published_size, 1)
        if not addresses or (addresses == self._published and not again and not grown):
            return
        self._published, self._publish_again, self._published_size = addresses, None, size
        op_id, outputs = self.core.publish("peer", peer_fields(addresses), now)
        self._waiting[op_id] = None
        self._apply(outputs)

    # -- datagrams and time -----------------------------------------------------------------

    def received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Feed one datagram to the core."""
        self._apply(self.core.datagram_received(data, addr, self._clock()))

    def _apply(self, outputs: list[Output]) -> None:
        self._seqs.save()  # before the records that use them leave: never reuse a seq
        for out in outputs:
            if isinstance(out, Send):
                self._send(out)
            else:
                self._done(out)
        self._rearm()

    def _send(self, send: Send) -> None:
        try:
            host = ip_address(send.addr[0])
        except ValueError:
            host = None
        bound = next((b for b in self._bound.values() if host in b.network), None)
        if bound is None:  # a VPN we just left: the core times the request out
            self.counters["no_route"] += 1
            return
        try:
            bound.transport.sendto(send.data, send.addr)
        except OSError:
            self.counters["send_errors"] += 1

    def _done(self, done: LookupDone) -> None:
        if done.op_id not in self._waiting:
            return
        future = self._waiting.pop(done.op_id)
        if future is None:  # our peer record
            stored = done.result.stored > 0
            self._count("puts", stored)
            if not stored:
                self._publish_again = (self._clock() + REPUBLISH_RETRY_S, len(self.core.table))
        elif not future.done():
            future.set_result(done.result)

    def _count(self, kind: str, ok: bool) -> None:
        self.counters[f"{kind}_{'ok' if ok else 'failed'}"] += 1

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.core.next_timer()
        if when is None:
            return
        delay = max(0.0, when - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self.handle_timer)

    def handle_timer(self) -> None:
        """Run the core's timers that are due (the armed timer calls this; tests may too)."""
        self._timer = None
        self._apply(self.core.handle_timer(self._clock()))

    # -- operations for the control API -----------------------------------------------------

    async def get(self, key: bytes) -> LookupResult:
        """The best record under a single-publisher key (a peer record)."""
        found = await self._wait(lambda now: self.core.start_get(key, now))
        result = with_held(self.core.store, found, self._clock())
        self._count("lookups", result.record is not None)
        return result

    async def find_records(self, key: bytes) -> LookupResult:
        """The records under a multi-publisher key (providers, VPN records)."""
        found = await self._wait(lambda now: self.core.start_find_records(key, now))
        result = with_held(self.core.store, found, self._clock())
        self._count("lookups", bool(result.records))
        return result

    async def find_node(self, target: bytes) -> LookupResult:
        """The closest nodes to `target` that answered."""
        result = await self._wait(lambda now: self.core.start_find_node(target, now))
        self._count("lookups", bool(result.closest))
        return result

    async def peer(self, node_id: bytes) -> tuple[bytes | None, LookupResult]:
        """A node's key (found by its id) and the lookup of its peer record."""
        known = self.core.table.get(node_id)
        key = known.key if known is not None else None
        if key is None:
            nodes = await self.find_node(node_id)
            key = next((k for k in nodes.closest if node_id_of(k) == node_id), None)
            if key is None:
                return None, nodes
        return key, await self.get(peer_key(key))

    async def provide(
        self, resource: str, amount: int, localities: Sequence[bytes]
    ) -> LookupResult:
        """Sign our provider record for `resource` and put it (republished by the core)."""
        now = self._clock()
        fields = provider_fields(resource, amount, localities, self.core.config.addresses)
        expires = now + self.core.config.policy.dht_record_ttl_s
        seq = self.core.next_seq(provider_key(resource), now)  # above every seq before it
        raw = sign_record(self.identity, PROVIDER, seq, expires, fields)
        result = await self._wait(lambda now: self.core.start_put(raw, now))
        self._count("puts", result.stored > 0)
        return result

    async def put(self, raw: bytes) -> LookupResult:
        """Put a record this node signed (RecordError if it is not one); republished.

        A record whose seq is not above the last one this node signed under its key (two in
        one millisecond, a clock that stepped back, a restart) is signed again with the next
        seq, so that replicas take it.
        """
        record = parse_record(raw)
        if record.publisher != self.identity.public_key:
            raise RecordError("only records this node signed are put and republished")
        if record.seq <= self.core.seqs.last.get(record.key, -1):
            seq = self.core.next_seq(record.key, self._clock())
            fields = dict(record.fields)
            raw = sign_record(self.identity, record.kind, seq, record.expires, fields)
        result = await self._wait(lambda now: self.core.start_put(raw, now))
        self._count("puts", result.stored > 0)
        return result

    def withdraw(self, key: bytes) -> None:
        """Stop republishing our record under `key` (it lapses at its expiry)."""
        self.core.own.pop((key, self.identity.public_key), None)

    def own_records(self) -> list[bytes]:
        """The signed records this node publishes and keeps republishing."""
        return [record.raw for record in self.core.own.values()]

    async def _wait(self, start: Callable[[float], tuple[int, list[Output]]]) -> LookupResult:
        if len(self._waiting) >= MAX_WAITING:
            raise DhtBusy(f"{MAX_WAITING} DHT operations are already in flight")
        op_id, outputs = start(self._clock())
        future: asyncio.Future[LookupResult] = asyncio.get_running_loop().create_future()
        self._waiting[op_id] = future
        self._apply(outputs)
        limit = self.core.config.lookup_deadline_s + WAIT_MARGIN_S
        try:
            return await asyncio.wait_for(future, limit)
        finally:
            self._waiting.pop(op_id, None)

    def status(self) -> dict[str, Any]:
        """The `dht` section of `rms status`."""
        core = cast(dict[str, Any], self.core.status())
        counts = self.counters
        return {
            **core,
            "public_key": self.identity.public_key.hex(),
            "listening": [f"[{b.address}]:{self.port}" for b in self._bound.values()],
            "lookups": {"ok": counts["lookups_ok"], "failed": counts["lookups_failed"]},
            "puts": {"ok": counts["puts_ok"], "failed": counts["puts_failed"]},
            "io": {
                k: v for k, v in sorted(counts.items()) if not k.startswith(("lookups", "puts"))
            },
        }

    def health(self) -> str | None:
        """A problem when other nodes will refuse this node's key as a DHT contact."""
        if self.puzzle_solved:
            return None
        return (
            "this node's key was made before the DHT key puzzle and other nodes ignore it; "
            "the key was kept; to take part in the DHT, stop the daemon, move node.key away "
            "and start again (the node gets a new identity and rejoins its VPNs)"
        )
