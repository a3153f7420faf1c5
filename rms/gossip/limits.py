"""Bounded memory for gossip: an expiring map (dedupe) and token buckets (rate limits).

Both are driven by the `now` the caller passes and hold at most `capacity` keys, so no
peer can make a node's memory grow: a full map forgets its oldest key, a full bucket table
forgets its least recently used bucket. docs/broadcast.md says why forgetting is safe.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["ExpiringMap", "TokenBuckets"]

K = TypeVar("K")
V = TypeVar("V")


class ExpiringMap(Generic[K, V]):
    """A map whose keys expire at a time given on insertion; oldest evicted when full."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("an expiring map holds at least one key")
        self.capacity = capacity
        self.evicted = 0  # keys forgotten early because the map was full
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value of `key` if it is held (expired or not yet swept)."""
        item = self._items.get(key)
        return None if item is None else item[1]

    def put(self, key: K, value: V, expires: float) -> None:
        """Hold `key` until `expires`; a full map forgets its oldest key first."""
        if key not in self._items and len(self._items) >= self.capacity:
            self._items.popitem(last=False)
            self.evicted += 1
        self._items[key] = (expires, value)

    def expire(self, now: float) -> None:
        """Forget the keys whose time is up (insertion order is close to expiry order)."""
        while self._items:
            key, (expires, _) = next(iter(self._items.items()))
            if expires > now:
                return
            del self._items[key]

    def next_expiry(self) -> float | None:
        """When the oldest key expires, or None if the map is empty."""
        if not self._items:
            return None
        return next(iter(self._items.values()))[0]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets(Generic[K]):
    """One token bucket per key: `rate` tokens a second, holding at most `burst`."""

    def __init__(self, rate: float, burst: int, capacity: int) -> None:
        if rate <= 0 or burst < 1 or capacity < 1:
            raise ValueError("token buckets need a positive rate, burst and capacity")
        self.rate = rate
        self.burst = float(burst)
        self.capacity = capacity
        self._buckets: OrderedDict[K, _Bucket] = OrderedDict()

    def take(self, key: K, now: float) -> bool:
        """Spend one token of `key`'s bucket at `now`; False if it is empty."""
        bucket = self._bucket(key, now)
        # max(): a clock stepping back must not mint tokens nor go negative.
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
        bucket.updated = max(bucket.updated, now)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def limited(self, now: float) -> int:
        """How many keys could not spend a token right now."""
        return sum(
            1
            for b in self._buckets.values()
            if b.tokens + max(0.0, now - b.updated) * self.rate < 1.0
        )

    def forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: they hold nothing a new bucket would not."""
        full = [
            key
            for key, b in self._buckets.items()
            if b.tokens + max(0.0, now - b.updated) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]

    def _bucket(self, key: K, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.capacity:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)
