"""The client side of a DHT node: outstanding requests and driving operations to their end.

`pump` sends what an operation's lookup asks for next and finishes it when done;
`on_answer` feeds it an answer (contacts learned, a record found, a store acknowledged).
Functions of the node rather than methods, as in `rms.dht.server`.

A value lookup does not stop at the first copy: a replica may be stale (its publisher's
newer put missed it). Once a copy arrives it sends nothing more and waits for the requests
already in flight, until `quorum` copies agree on the highest seq seen, or at most
`collect_span` times the first copy's round trip. It returns the copy with the highest seq
and stores it back on the nodes that returned an older one (Kademlia section 2.3 stores a
found value along the lookup; here only where it repairs). A records lookup (providers,
audits) repairs the same way, per publisher.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rms.dht.lookup import Lookup
from rms.dht.records import Record, RecordError, parse_record
from rms.dht.rpc import contacts_of
from rms.dht.store import RecordStore
from rms.dht.types import Contact, LookupDone, LookupResult, Output, SockAddr
from rms.wire import Envelope
from rms.wire.messages import dht as msgs
from rms.wire.registry import MessageType

if TYPE_CHECKING:
    from rms.dht.node import DhtNode

__all__ = ["Kind", "Operation", "Pending", "finish", "on_answer", "pump", "with_held"]


class Kind(enum.Enum):
    """What an operation is after."""

    NODES = "nodes"  # the k closest nodes (join, bucket refresh)
    VALUE = "value"  # the best record under a single-publisher key
    PROVIDERS = "providers"  # the records under a multi-publisher key
    PUT = "put"  # find the k closest nodes, then store a record on them
    PING = "ping"  # prove a contact's address (not an operation: op_id is None)


@dataclass(slots=True)
class Pending:
    """A request of ours awaiting its answer."""

    expects: MessageType
    contact: Contact  # the node asked
    addr: SockAddr  # where we sent it: the node itself, or the first relay
    hop_key: bytes  # who must answer at `addr`
    deadline: float
    op_id: int | None
    path: int = 0
    relayed: bool = False
    sent: float = 0.0  # when: a value lookup's wait for more copies scales with the round trip


@dataclass(slots=True)
class Operation:
    """A lookup or a put in progress."""

    op_id: int
    kind: Kind
    key: bytes
    lookup: Lookup
    deadline: float
    record: Record | None = None  # the record to store (puts) or found (value lookups)
    found: dict[bytes, Record] = field(default_factory=dict)  # providers, by publisher
    holders: list[tuple[Contact, bytes, int]] = field(default_factory=list)  # who, publisher, seq
    repaired: int = 0
    storing: int = 0  # puts: stores in flight
    stored: int = 0
    store_rpcs: int = 0
    finished: bool = False

    def found_enough(self) -> bool:
        """At the deadline: whether it got what it was after (a record, a store)."""
        if self.kind is Kind.PUT:
            return self.stored > 0
        return self.kind is Kind.VALUE and self.record is not None

    def result(self, ok: bool) -> LookupResult:
        """The result to report for this operation."""
        record = self.record.raw if self.record is not None and self.kind is Kind.VALUE else None
        records = tuple(r.raw for r in sorted(self.found.values(), key=lambda r: r.publisher))
        return LookupResult(
            key=self.key,
            ok=ok,
            record=record,
            records=records,
            closest=tuple(c.key for c in self.lookup.closest()),
            stored=self.stored,
            rpcs=self.lookup.rpcs + self.store_rpcs,
            copies=len(self.holders),
            repaired=self.repaired,
        )


def on_answer(
    node: DhtNode, op: Operation, pending: Pending, env: Envelope, now: float
) -> list[Output]:
    """Feed an answer to our request `pending` of `op` to it; returns what to send next."""
    if op.kind is Kind.PUT and env.msg_type == msgs.STORED:
        op.storing -= 1
        op.stored += 1 if env.body.get("ok") is True else 0
        return pump(node, op, now)
    learned = [
        c for key, addrs in contacts_of(env.body.get("contacts"))
        if (c := node.reach.contact(key, addrs, pending.contact)) is not None
    ]  # fmt: skip
    op.lookup.answered(pending.path, pending.contact.node_id, learned)
    if op.kind is Kind.VALUE:
        _take_value(node, op, env.body.get("record"), pending, now)
    elif op.kind is Kind.PROVIDERS:
        _take_records(node, op, env.body.get("records"), pending.contact)
    return pump(node, op, now)


def _take_value(node: DhtNode, op: Operation, raw: object, pending: Pending, now: float) -> None:
    record = _valid_for(node, op, raw)
    if record is None or record.multi:
        return
    op.holders.append((pending.contact, record.publisher, record.seq))
    if op.record is None:  # the first copy: wait a round trip more for those in flight
        op.deadline = min(op.deadline, now + node.config.collect_span * (now - pending.sent))
    if op.record is None or record.seq > op.record.seq:
        op.record = record


def _take_records(node: DhtNode, op: Operation, raws: object, holder: Contact) -> None:
    for raw in raws if isinstance(raws, tuple) else ():
        record = _valid_for(node, op, raw)
        if record is not None and record.multi:
            op.holders.append((holder, record.publisher, record.seq))
            old = op.found.get(record.publisher)
            if old is None or record.seq > old.seq:
                op.found[record.publisher] = record


def _valid_for(node: DhtNode, op: Operation, raw: object) -> Record | None:
    if not isinstance(raw, bytes):
        return None
    try:
        record = parse_record(raw)
    except RecordError:
        node.counters["bad_record"] += 1
        return None
    return record if record.key == op.key else None


def pump(node: DhtNode, op: Operation, now: float) -> list[Output]:
    """Send the requests `op` needs next; finish it when its lookup or its stores are done."""
    if op.finished:
        return []
    if op.kind is Kind.VALUE and op.record is not None:
        return [] if _collecting(node, op, now) else finish(node, op, True, now)
    out: list[Output] = []
    if op.kind is Kind.PUT and (op.lookup.done or op.storing or op.store_rpcs):
        return _pump_put(node, op, now)
    for path, contact in op.lookup.next_queries():
        out += node._request(contact, *_query(op), now, op_id=op.op_id, path=path)
    if op.lookup.done:
        out += _pump_put(node, op, now) if op.kind is Kind.PUT else finish(node, op, True, now)
    return out


def _collecting(node: DhtNode, op: Operation, now: float) -> bool:
    # Copies are still on their way, and no `quorum` of them agree on the newest seq yet.
    if not op.lookup.in_flight or now >= op.deadline or op.record is None:
        return False
    newest = op.record.seq
    return sum(1 for _, _, seq in op.holders if seq == newest) < node.config.quorum


def _query(op: Operation) -> tuple[MessageType, dict[str, object]]:
    if op.kind is Kind.VALUE:
        return msgs.FIND_VALUE, {"key": op.key}
    if op.kind is Kind.PROVIDERS:
        return msgs.FIND_PROVIDERS, {"key": op.key}
    return msgs.FIND_NODE, {"target": op.key}


def _pump_put(node: DhtNode, op: Operation, now: float) -> list[Output]:
    if op.store_rpcs == 0 and op.record is not None:
        targets = op.lookup.closest()
        body: dict[str, object] = {"record": op.record.raw}
        out: list[Output] = []
        for contact in targets:
            out += node._request(contact, msgs.STORE, body, now, op_id=op.op_id, path=0)
            op.store_rpcs += 1
            op.storing += 1
        if targets:
            return out
    return finish(node, op, op.stored > 0, now) if op.storing <= 0 else []


def finish(node: DhtNode, op: Operation, ok: bool, now: float) -> list[Output]:
    """End `op`: a `LookupDone` for callers; after our join, refresh the far buckets."""
    op.finished = True
    node.ops.pop(op.op_id, None)
    if op.op_id < 0:  # internal: nobody waits for it
        joined = op.kind is Kind.NODES and op.key == node.node_id and not node._joined
        return node._refresh_far(op, now) if joined else []
    repairs = _repair(node, op, now)
    return [LookupDone(op.op_id, op.result(ok)), *repairs]


def _repair(node: DhtNode, op: Operation, now: float) -> list[Output]:
    """Store the newest copy of each publisher's record on the nodes that returned an older
    one, and here if we hold an older one."""
    best = {op.record.publisher: op.record} if op.record is not None else op.found
    max_ttl = node.config.policy.dht_max_record_ttl_s
    for record in best.values():
        node.store.refresh(record, now, max_ttl)
    out: list[Output] = []
    for contact, publisher, seq in op.holders:
        newest = best.get(publisher)
        if newest is not None and seq < newest.seq:
            body: dict[str, object] = {"record": newest.raw}
            out += node._request(contact, msgs.STORE, body, now, op_id=None, path=0)
            op.repaired += 1
    node.repairs += op.repaired
    return out


def with_held(store: RecordStore, result: LookupResult, now: float) -> LookupResult:
    """`result` with the replicas `store` holds under its key, the highest seq of each
    publisher winning (a lookup asks other nodes only)."""
    held = store.get(result.key, now)
    if not held:
        return result
    if not held[0].multi:
        theirs = None if result.record is None else parse_record(result.record)
        better = theirs is None or held[0].seq > theirs.seq
        return replace(result, record=held[0].raw) if better else result
    best = {r.publisher: r for r in map(parse_record, result.records)}
    for record in held:
        if record.publisher not in best or record.seq > best[record.publisher].seq:
            best[record.publisher] = record
    return replace(result, records=tuple(best[k].raw for k in sorted(best)))
