"""The DHT node: a sans-IO Kademlia core (docs/dht.md).

Feed it datagrams (`datagram_received`) and timer ticks (`handle_timer`) with the current
wall-clock time; it returns `Send` outputs and `LookupDone` events and says when it next
needs a tick (`next_timer`). Every datagram in or out is a signed `dht.*` envelope; peer
input goes through `rms.wire.Decoder` and anything wrong with it is counted and dropped.
Serving requests lives in `rms.dht.server`, relaying in `rms.dht.relay`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

from rms.dht import server
from rms.dht.lookup import Lookup
from rms.dht.ops import Kind, Operation, Pending, finish, on_answer, pump
from rms.dht.puzzle import satisfies
from rms.dht.reach import Reach
from rms.dht.records import Record, Seqs, parse_record, provider_key, record_key, sign_record
from rms.dht.relay import Boxes, Forwards
from rms.dht.routing import Origins, RoutingTable, bucket_index, distance
from rms.dht.rpc import ANSWERS, RateLimiter
from rms.dht.store import RecordStore
from rms.dht.types import Address, Contact, DhtConfig, Output, Send, SockAddr
from rms.identity import NodeIdentity
from rms.wire import Accepted, Decoder, DecoderConfig, EncodeError, Envelope, encode
from rms.wire.messages import dht as msgs
from rms.wire.registry import MessageType

__all__ = ["DhtNode"]

MAINTENANCE_S = 60.0


class DhtNode:
    """One node of the cloud-wide DHT."""

    def __init__(
        self, identity: NodeIdentity, config: DhtConfig, rng: random.Random, now: float
    ) -> None:
        self.identity = identity
        self.config = config
        self.rng = rng
        self.key = identity.public_key
        self.node_id = identity.node_id
        self.decoder = Decoder(config=DecoderConfig(max_datagram=config.max_datagram))
        self.table = RoutingTable(
            self.node_id, config.k, config.replacement_cache, config.per_subnet,
            config.max_failures, per_relay=config.per_relay,
        )  # fmt: skip
        self.store = RecordStore(
            self.node_id, config.max_records, config.per_publisher, config.per_source,
            config.per_key,
        )  # fmt: skip
        self.pending: dict[bytes, Pending] = {}
        self.ops: dict[int, Operation] = {}
        self.own: dict[tuple[bytes, bytes], Record] = {}  # our records, for republishing
        self.seqs = Seqs()  # the last seq we signed per key: never reused, never lower
        self.origins = Origins()  # the network of each address, for the per-origin limits
        self.reach = Reach(self.key, config, self.table)
        self.limiter = RateLimiter(config.request_rate, config.request_burst)
        self.forwards = Forwards(config.relay_rate, config.max_pending, config.request_timeout_s)
        self.boxes = Boxes(identity)
        self.counters: Counter[str] = Counter()
        self.repairs = 0  # stale replicas our value lookups sent the newest copy to
        self._next_op = 1
        self._next_internal = 0
        self._joined = False
        self._maintenance_at = now + MAINTENANCE_S
        self._republish_at = now + config.policy.dht_republish_s
        self._from = [a.wire() for a in config.addresses]

    # -- operations -------------------------------------------------------------------------

    def bootstrap(
        self, seeds: Sequence[tuple[bytes, Sequence[Address]]], now: float
    ) -> list[Output]:
        """Join through known nodes (e.g. VPN roster members): look up our own id."""
        contacts = [self.reach.contact(key, tuple(addrs), None) for key, addrs in seeds]
        usable = [c for c in contacts if c is not None]
        return self._start(Kind.NODES, self.node_id, now, usable)

    def start_find_node(self, target: bytes, now: float) -> tuple[int, list[Output]]:
        """Look up the k nodes closest to `target`."""
        return self._start_op(Kind.NODES, target, now, None)

    def start_get(
        self, key: bytes, now: float, seeds: Sequence[Contact] | None = None
    ) -> tuple[int, list[Output]]:
        """Look up the best record under a single-publisher key (a peer record)."""
        return self._start_op(Kind.VALUE, key, now, seeds)

    def start_find_records(self, key: bytes, now: float) -> tuple[int, list[Output]]:
        """Look up the records under a multi-publisher key (providers, VPN records)."""
        return self._start_op(Kind.PROVIDERS, key, now, None)

    def start_find_providers(self, resource: str, now: float) -> tuple[int, list[Output]]:
        """Look up who provides `resource` ("storage" or "cpu")."""
        return self.start_find_records(provider_key(resource), now)

    def start_put(self, raw: bytes, now: float) -> tuple[int, list[Output]]:
        """Store a signed record on the k nodes closest to its key; raises RecordError."""
        record = parse_record(raw)
        if record.publisher == self.key:
            self.own[(record.key, record.publisher)] = record
            self.seqs.note(record.key, record.seq)
        op_id, out = self._start_op(Kind.PUT, record.key, now, None, record)
        return op_id, out

    def publish(self, kind: str, fields: dict[str, object], now: float) -> tuple[int, list[Output]]:
        """Sign a record of ours and put it; raises RecordError.

        Its seq is above every seq we signed under its key (`Seqs`), even if the clock
        stepped back since.
        """
        return self.start_put(self._sign_own(kind, fields, now), now)

    def next_seq(self, key: bytes, now: float) -> int:
        """The seq our next record under `key` must carry (for records signed elsewhere)."""
        return self.seqs.next(key, now)

    def _sign_own(self, kind: str, fields: dict[str, object], now: float) -> bytes:
        seq = self.seqs.next(record_key(kind, self.key, fields), now)
        ttl = self.config.policy.dht_record_ttl_s
        return sign_record(self.identity, kind, seq, now + ttl, fields)

    def set_origins(self, origins: Mapping[str, str]) -> None:
        """The network of each address the adapter vouches for (host -> label)."""
        self.origins.set(origins)

    def set_addresses(self, addresses: Sequence[Address]) -> None:
        """Our own addresses changed (a VPN joined or left): send from and announce these."""
        self.config = replace(self.config, addresses=tuple(addresses))
        self.reach.config = self.config
        self._from = [a.wire() for a in self.config.addresses]

    def _start_op(
        self, kind: Kind, key: bytes, now: float, seeds: Sequence[Contact] | None,
        record: Record | None = None,
    ) -> tuple[int, list[Output]]:  # fmt: skip
        op_id = self._next_op
        self._next_op += 1
        return op_id, self._start(kind, key, now, seeds, record=record, op_id=op_id)

    def _start(
        self, kind: Kind, key: bytes, now: float, seeds: Sequence[Contact] | None,
        *, record: Record | None = None, op_id: int | None = None,
    ) -> list[Output]:  # fmt: skip
        cfg = self.config
        if op_id is None:  # internal (join, refresh, republish): negative ids, no event
            self._next_internal -= 1
            op_id = self._next_internal
        start = list(seeds) if seeds is not None else self.table.closest(key, cfg.k)
        paths = 1 if kind in (Kind.NODES, Kind.PUT) else cfg.paths
        radius = self.table.near_radius() if cfg.near_span > 0 else None
        near = None if radius is None else int(radius * cfg.near_span)
        lookup = Lookup(key, start, paths, cfg.alpha, cfg.k, near=near)
        op = Operation(op_id, kind, key, lookup, now + cfg.lookup_deadline_s, record)
        self.ops[op_id] = op
        return pump(self, op, now)

    # -- inbound ----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: SockAddr, now: float) -> list[Output]:
        """Handle one datagram from `addr`; never raises on peer input."""
        result = self.decoder.decode(data, now)
        if not isinstance(result, Accepted):
            self.counters["rejected"] += 1
            return []
        env = result.envelope
        if not satisfies(env.sender, self.config.bits):
            self.counters["puzzle"] += 1  # S/Kademlia: unsolved keys are not peers
            return []
        if env.msg_type in ANSWERS or env.msg_type == msgs.RELAY:
            return self._request_received(env, data, addr, now)
        if env.msg_type == msgs.RELAYED:
            return self._relayed(env, addr, now)
        return self._answer(env, addr, now, relayed_by=None)

    def _request_received(
        self, env: Envelope, data: bytes, addr: SockAddr, now: float
    ) -> list[Output]:
        # Every request counts against the network it came from, relayed ones too.
        if not self.limiter.allow(self.origins.of(addr[0]), now):
            self.counters["rate_limited"] += 1
            return []
        if env.msg_type == msgs.RELAY:
            return server.relay(self, env, data, addr, now)
        return server.serve(self, env, data, addr, now, back=None)

    def _answer(
        self, env: Envelope, addr: SockAddr, now: float, relayed_by: bytes | None
    ) -> list[Output]:
        rid = env.body.get("rid")
        pending = self.pending.get(rid) if isinstance(rid, bytes) else None
        if pending is None or not self._matches(pending, env, addr, relayed_by):
            self.counters["unexpected_answer"] += 1  # unsolicited, spoofed or misrouted
            return []
        del self.pending[rid]  # type: ignore[arg-type]
        self._prove(pending, now)
        if pending.op_id is None:
            return []
        op = self.ops.get(pending.op_id)
        return [] if op is None else on_answer(self, op, pending, env, now)

    def _matches(
        self, pending: Pending, env: Envelope, addr: SockAddr, relayed_by: bytes | None
    ) -> bool:
        if env.msg_type != pending.expects or env.sender != pending.contact.key:
            return False
        if pending.relayed:
            return relayed_by == pending.hop_key
        return relayed_by is None and addr == pending.addr

    def _prove(self, pending: Pending, now: float) -> None:
        contact = pending.contact
        contact.failures = 0
        # It counts against the network we heard it from: its own, or our first relay's.
        origin = self.origins.of(pending.addr[0])
        if not pending.relayed:
            self.reach.prove(pending.addr, now)
        else:
            origin = "via:" + origin
        oldest = self.table.add(contact, now, origin)
        held = self.table.get(contact.node_id)  # the table's own object, if it took it
        if held is not None:
            self.reach.note_relay(held)
        if oldest is not None and not self._pinging(oldest):
            self._ping(oldest, now)

    def _relayed(self, env: Envelope, addr: SockAddr, now: float) -> list[Output]:
        rid, inner = env.body.get("rid"), env.body.get("inner")
        if not isinstance(rid, bytes) or not isinstance(inner, bytes):
            return []
        forward = self.forwards.answer(rid, env.sender, addr)
        if forward is not None:  # we are a relay: pass the answer back untouched
            body: dict[str, object] = {"rid": forward.back_rid, "inner": inner}
            return self._send_raw(forward.back_addr, msgs.RELAYED, body, now)
        pending = self.pending.get(rid)
        if pending is None or not pending.relayed or addr != pending.addr:
            self.counters["unexpected_answer"] += 1
            return []
        plain = self.boxes.open(pending.contact.key, inner)
        result = None if plain is None else self.decoder.decode(plain, now)
        if not isinstance(result, Accepted):
            self.counters["bad_relayed"] += 1
            return []
        return self._answer(result.envelope, addr, now, relayed_by=env.sender)

    # -- sending ----------------------------------------------------------------------------

    def _request(
        self, contact: Contact, msg_type: MessageType, fields: dict[str, object], now: float,
        *, op_id: int | None, path: int,
    ) -> list[Output]:  # fmt: skip
        if len(self.pending) >= self.config.max_pending:
            self.counters["pending_full"] += 1
            return self._fail_later(contact, msg_type, now, op_id, path)
        rid = self.rng.randbytes(msgs.RID_SIZE)
        data = self._encode(msg_type, {"rid": rid, "from": self._from, **fields}, now)
        if data is None:
            return self._fail_later(contact, msg_type, now, op_id, path)
        deadline = now + self.config.request_timeout_s * (1 + len(contact.route))
        expects = ANSWERS[msg_type]
        if not contact.route:
            addr = self.reach.direct_addr(contact)
            if addr is None:
                return self._fail_later(contact, msg_type, now, op_id, path)
            self.pending[rid] = Pending(
                expects, contact, addr, contact.key, deadline, op_id, path, sent=now
            )
            return [Send(addr, data)]
        sent = server.send_relayed(
            self, contact, rid, data, expects=expects, deadline=deadline, op_id=op_id, path=path,
            now=now,
        )  # fmt: skip
        return sent or self._fail_later(contact, msg_type, now, op_id, path)

    def _fail_later(
        self, contact: Contact, msg_type: MessageType, now: float, op_id: int | None, path: int
    ) -> list[Output]:
        # Record it as a request that times out at once, so the lookup moves on next tick.
        rid = self.rng.randbytes(msgs.RID_SIZE)
        self.pending[rid] = Pending(
            ANSWERS[msg_type], contact, ("", 0), b"", now, op_id, path, sent=now
        )
        return []

    def _encode(self, msg_type: MessageType, body: dict[str, object], now: float) -> bytes | None:
        try:
            return encode(self.identity, msg_type, body, now, max_datagram=self.config.max_datagram)
        except EncodeError:
            self.counters["too_large"] += 1  # a message that does not fit is not sent
            return None

    def _send_raw(
        self, addr: SockAddr, msg_type: MessageType, body: dict[str, object], now: float
    ) -> list[Output]:
        data = self._encode(msg_type, body, now)
        return [] if data is None else [Send(addr, data)]

    def _ping(self, contact: Contact, now: float) -> list[Output]:
        return self._request(contact, msgs.PING, {}, now, op_id=None, path=0)

    def _pinging(self, contact: Contact) -> bool:
        return any(
            p.contact is contact and p.op_id is None and p.expects == msgs.PONG
            for p in self.pending.values()
        )

    # -- timers -----------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When `handle_timer` must run next (wall-clock seconds)."""
        times = [p.deadline for p in self.pending.values()]
        times += [op.deadline for op in self.ops.values()]
        times.append(min(self._maintenance_at, self._republish_at))
        return min(times)

    def handle_timer(self, now: float) -> list[Output]:
        """Time out requests and operations, refresh buckets, republish our records."""
        out: list[Output] = []
        for rid in [r for r, p in self.pending.items() if p.deadline <= now]:
            out += self._timed_out(self.pending.pop(rid), now)
        for op in [o for o in self.ops.values() if o.deadline <= now]:
            out += finish(self, op, op.found_enough(), now)
        if now >= self._maintenance_at:
            self._maintenance_at = now + MAINTENANCE_S
            out += self._maintain(now)
        if now >= self._republish_at:
            self._republish_at = now + self.config.policy.dht_republish_s
            out += self._republish(now)
        return out

    def _timed_out(self, pending: Pending, now: float) -> list[Output]:
        self.counters["timeouts"] += 1
        if pending.hop_key:  # b"": never sent (local limit), not the contact's fault
            self.table.failed(pending.contact.node_id)
        op = self.ops.get(pending.op_id) if pending.op_id is not None else None
        if op is None:
            return []
        if op.kind is Kind.PUT and pending.expects == msgs.STORED:
            op.storing -= 1
        else:
            op.lookup.failed(pending.path, pending.contact.node_id)
        return pump(self, op, now)

    def _maintain(self, now: float) -> list[Output]:
        self.store.expire(now)
        self.forwards.expire(now)
        out: list[Output] = []
        for index in self.table.idle_buckets(now, self.config.refresh_s):
            self.table.touch(index, now)
            out += self._start(Kind.NODES, self._random_id_in(index), now, None)
        return out

    def _refresh_far(self, op: Operation, now: float) -> list[Output]:
        # Kademlia section 2.3: a joining node refreshes every bucket further away than its
        # closest neighbour, so that its table covers the whole id space from the start.
        self._joined = True
        closest = op.lookup.closest()
        nearest = bucket_index(self.node_id, closest[0].node_id) if closest else 0
        out: list[Output] = []
        for index in range(nearest):
            if len(self.table.buckets[index].contacts) >= self.config.join_refresh_below:
                continue  # the join lookup already put contacts there
            self.table.touch(index, now)
            out += self._start(Kind.NODES, self._random_id_in(index), now, None)
        return out

    def _random_id_in(self, index: int) -> bytes:
        # Flip bit `index` of our id and randomise the bits after it: bucket `index`.
        own = int.from_bytes(self.node_id, "big")
        low = self.rng.getrandbits(255 - index) if index < 255 else 0
        value = ((own >> (255 - index)) ^ 1) << (255 - index) | low
        return value.to_bytes(32, "big")

    def _republish(self, now: float) -> list[Output]:
        out: list[Output] = []
        ttl = self.config.policy.dht_record_ttl_s
        for slot, record in list(self.own.items()):
            seq = self.seqs.next(record.key, now)
            raw = sign_record(self.identity, record.kind, seq, now + ttl, dict(record.fields))
            self.own[slot] = parse_record(raw)
            self.seqs.note(record.key, seq)
            out += self._start(Kind.PUT, record.key, now, None, record=self.own[slot])
        return out

    # -- status -----------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """The `dht` section of `rms status`: JSON-able figures."""
        return {
            "node_id": self.node_id.hex(),
            "routing_table": len(self.table),
            "estimated_nodes": self.estimated_nodes(),
            "stored_records": self.store.count,
            "own_records": len(self.own),
            "known_origins": len(self.origins),
            "pending_requests": len(self.pending),
            "operations": len(self.ops),
            "relayed": self.forwards.relayed,
            "repairs": self.repairs,
            "dropped": dict(sorted(self.counters.items())),
        }

    def estimated_nodes(self) -> int:
        """The network size, from the distance to our k-th closest contact."""
        closest = self.table.closest(self.node_id, self.config.k)
        if not closest:
            return 1
        far = distance(closest[-1].node_id, self.node_id) or 1
        return max(len(closest) + 1, round(len(closest) * 2**256 / far))
