"""The client side state of a DHT node: outstanding requests and running operations."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from rms.dht.lookup import Lookup
from rms.dht.records import Record
from rms.dht.types import Contact, LookupResult, SockAddr
from rms.wire.registry import MessageType

__all__ = ["Kind", "Operation", "Pending"]


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
