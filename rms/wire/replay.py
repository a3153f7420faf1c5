"""A bounded replay cache that stays sound when it is full.

The cache remembers the (sender, nonce) key and timestamp of every accepted envelope. It
must forget some of them: entries that are older than the timestamp window (the window
rejects them anyway), and, when it is full, the oldest entries still inside the window.
Either way it raises its *floor* to the forgotten timestamp, and the decoder rejects as
stale every envelope whose timestamp is at or below the floor. So every forgotten envelope
is still refused: invariant "each key ever added is in the cache or its timestamp is
<= floor". Evicting the oldest timestamp first keeps the floor as low as it can be; it is
even sound if the clock steps back (docs/wire.md, "Replay cache").
"""

from __future__ import annotations

import heapq

__all__ = ["ReplayCache"]

NO_FLOOR = -(2**63) - 1  # below every msgpack integer


class ReplayCache:
    """Remembers accepted (sender, nonce) keys; at most `capacity` of them."""

    __slots__ = ("_by_key", "_capacity", "_floor_ms", "_heap", "_max_age_ms")

    def __init__(self, capacity: int, max_age_ms: int) -> None:
        if capacity < 1:
            raise ValueError(f"replay cache capacity must be at least 1, got {capacity}")
        if max_age_ms < 0:
            raise ValueError(f"replay cache max age must be >= 0, got {max_age_ms}")
        self._capacity = capacity
        self._max_age_ms = max_age_ms
        self._by_key: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []  # (timestamp_ms, key): oldest on top
        self._floor_ms = NO_FLOOR

    @property
    def capacity(self) -> int:
        """The most keys the cache holds."""
        return self._capacity

    @property
    def floor_ms(self) -> int:
        """Timestamps at or below this are refused: their keys may have been forgotten."""
        return self._floor_ms

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def is_below_floor(self, timestamp_ms: int) -> bool:
        """Whether an envelope this old must be refused because of forgotten keys."""
        return timestamp_ms <= self._floor_ms

    def add(self, key: bytes, timestamp_ms: int, now_ms: int) -> None:
        """Remember `key`; forget expired entries, then the oldest one if full."""
        if key in self._by_key:
            return
        self._expire(now_ms - self._max_age_ms)
        if len(self._by_key) < self._capacity:
            self._by_key[key] = timestamp_ms
            heapq.heappush(self._heap, (timestamp_ms, key))
            return
        # Full: push the new entry and forget the oldest, which may be the new one itself.
        oldest_ms, oldest_key = heapq.heappushpop(self._heap, (timestamp_ms, key))
        if oldest_key != key:
            del self._by_key[oldest_key]
            self._by_key[key] = timestamp_ms
        self._raise_floor(oldest_ms)

    def _expire(self, horizon_ms: int) -> None:
        heap = self._heap
        while heap and heap[0][0] < horizon_ms:
            expired_ms, expired_key = heapq.heappop(heap)
            del self._by_key[expired_key]
            self._raise_floor(expired_ms)

    def _raise_floor(self, timestamp_ms: int) -> None:
        self._floor_ms = max(self._floor_ms, timestamp_ms)
