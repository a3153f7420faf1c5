"""The records a node holds for the cloud, with quotas (docs/dht.md, "Caps and quotas").

Records are kept per (key, publisher). A record replaces the one it finds only with a higher
sequence number (a lower one never wins: no rollback; an equal one must be the same bytes).
Quotas bound what one publisher, one source subnet and one multi-publisher key may hold; when
the global limit is reached the record whose key is furthest from our id goes first (we are
the least responsible for it: its k closest nodes are elsewhere), the earliest expiry
breaking ties. A new record that would itself be the furthest is refused instead.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

from rms.dht.records import Record
from rms.dht.routing import distance

__all__ = ["RecordStore", "StoreOutcome"]


class StoreOutcome(enum.Enum):
    """Why a store was accepted or refused."""

    STORED = "stored"
    SAME = "same"  # already held, identical
    STALE = "stale"  # a lower or conflicting equal sequence number
    EXPIRED = "expired"
    TOO_LONG = "too_long"  # expires beyond the policy's maximum lifetime
    PUBLISHER_QUOTA = "publisher_quota"
    SOURCE_QUOTA = "source_quota"
    KEY_QUOTA = "key_quota"
    FULL = "full"


@dataclass(slots=True)
class _Held:
    record: Record
    source: str


class RecordStore:
    """Records by key and publisher, bounded."""

    def __init__(
        self, own_id: bytes, max_records: int, per_publisher: int, per_source: int, per_key: int
    ) -> None:
        self.own_id = own_id
        self.max_records = max_records
        self.per_publisher = per_publisher
        self.per_source = per_source
        self.per_key = per_key
        self._held: dict[bytes, dict[bytes, _Held]] = {}
        self._publishers: Counter[bytes] = Counter()
        self._sources: Counter[str] = Counter()
        self.outcomes: Counter[StoreOutcome] = Counter()
        self.count = 0

    def put(self, record: Record, source: str, now: float, max_ttl: float) -> StoreOutcome:
        """Store a verified record received from `source` (a subnet) at time `now`."""
        outcome = self._put(record, source, now, max_ttl)
        self.outcomes[outcome] += 1
        return outcome

    def get(self, key: bytes, now: float) -> list[Record]:
        """The live records under `key`, highest sequence first."""
        found = [h.record for h in self._held.get(key, {}).values() if h.record.expires > now]
        return sorted(found, key=lambda r: -r.seq)

    def refresh(self, record: Record, now: float, max_ttl: float) -> bool:
        """Replace the copy we hold of `record`'s key and publisher if it is older."""
        held = self._held.get(record.key, {}).get(record.publisher)
        if held is None or not now < record.expires <= now + max_ttl:
            return False
        return self._replace(held, record) is StoreOutcome.STORED

    def records(self) -> list[Record]:
        """Every record held (for republishing)."""
        return [h.record for per_key in self._held.values() for h in per_key.values()]

    def expire(self, now: float) -> int:
        """Drop expired records; returns how many."""
        dead = [(k, p) for k, per in self._held.items() for p, h in per.items()
                if h.record.expires <= now]  # fmt: skip
        for key, publisher in dead:
            self._remove(key, publisher)
        return len(dead)

    def _put(self, record: Record, source: str, now: float, max_ttl: float) -> StoreOutcome:
        if record.expires <= now:
            return StoreOutcome.EXPIRED
        if record.expires > now + max_ttl:
            return StoreOutcome.TOO_LONG
        per_key = self._held.get(record.key, {})
        old = per_key.get(record.publisher)
        if old is not None:
            return self._replace(old, record)
        refused = self._quota(record, source, len(per_key))
        if refused is not None:
            return refused
        if self.count >= self.max_records and not self._evict_for(record):
            return StoreOutcome.FULL
        self._held.setdefault(record.key, {})[record.publisher] = _Held(record, source)
        self._publishers[record.publisher] += 1
        self._sources[source] += 1
        self.count += 1
        return StoreOutcome.STORED

    def _replace(self, old: _Held, record: Record) -> StoreOutcome:
        if record.seq == old.record.seq and record.raw == old.record.raw:
            return StoreOutcome.SAME
        if record.seq <= old.record.seq:
            return StoreOutcome.STALE
        old.record = record  # quotas unchanged: same key, publisher and source slot
        return StoreOutcome.STORED

    def _quota(self, record: Record, source: str, on_key: int) -> StoreOutcome | None:
        if self._publishers[record.publisher] >= self.per_publisher:
            return StoreOutcome.PUBLISHER_QUOTA
        if self._sources[source] >= self.per_source:
            return StoreOutcome.SOURCE_QUOTA
        if on_key >= (self.per_key if record.multi else 1):
            return StoreOutcome.KEY_QUOTA
        return None

    def _evict_for(self, record: Record) -> bool:
        victim = max(
            ((k, p, h) for k, per in self._held.items() for p, h in per.items()),
            key=lambda t: (distance(t[0], self.own_id), -t[2].record.expires),
        )
        if distance(victim[0], self.own_id) <= distance(record.key, self.own_id):
            return False
        self._remove(victim[0], victim[1])
        return True

    def _remove(self, key: bytes, publisher: bytes) -> None:
        per_key = self._held[key]
        held = per_key.pop(publisher)
        if not per_key:
            del self._held[key]
        self._publishers[held.record.publisher] -= 1
        self._sources[held.source] -= 1
        self.count -= 1
