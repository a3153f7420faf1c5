"""The client side of a DHT node: outstanding requests and driving operations to their end.

`pump` sends what an operation's lookup asks for next and finishes it when done;
`on_answer` feeds it an answer (contacts learned, a record found, a store acknowledged).
Functions of the node rather than methods, as in `rms.dht.server`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rms.dht.lookup import Lookup
from rms.dht.records import Record, RecordError, parse_record
from rms.dht.rpc import contacts_of
from rms.dht.types import Contact, LookupDone, LookupResult, Output, SockAddr
from rms.wire import Envelope
from rms.wire.messages import dht as msgs
from rms.wire.registry import MessageType

if TYPE_CHECKING:
    from rms.dht.node import DhtNode

__all__ = ["Kind", "Operation", "Pending", "finish", "on_answer", "pump"]


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
    storing: int = 0  # puts: stores in flight
    stored: int = 0
    store_rpcs: int = 0
    finished: bool = False

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
        _take_value(node, op, env.body.get("record"))
    elif op.kind is Kind.PROVIDERS:
        _take_records(node, op, env.body.get("records"))
    return pump(node, op, now)


def _take_value(node: DhtNode, op: Operation, raw: object) -> None:
    record = _valid_for(node, op, raw)
    better = record is not None and (op.record is None or record.seq > op.record.seq)
    if better and record is not None and not record.multi:
        op.record = record


def _take_records(node: DhtNode, op: Operation, raws: object) -> None:
    for raw in raws if isinstance(raws, tuple) else ():
        record = _valid_for(node, op, raw)
        if record is not None and record.multi:
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
        return finish(node, op, True, now)
    out: list[Output] = []
    if op.kind is Kind.PUT and (op.lookup.done or op.storing or op.store_rpcs):
        return _pump_put(node, op, now)
    for path, contact in op.lookup.next_queries():
        out += node._request(contact, *_query(op), now, op_id=op.op_id, path=path)
    if op.lookup.done:
        out += _pump_put(node, op, now) if op.kind is Kind.PUT else finish(node, op, True, now)
    return out


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
    return [LookupDone(op.op_id, op.result(ok))]
