"""A guardian's record of when it last heard from each member (kept out of the roster).

Putting `last_seen` in the signed roster would need a new version for every heartbeat;
instead each guardian keeps it locally. A member it starts tracking (a new member, or every
member when the guardian restarts) counts as heard at that moment, so a restart never
expires the whole VPN at once.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Liveness"]


class Liveness:
    """Last-heard times of members, and who has been silent longer than `expiry_s`."""

    __slots__ = ("_expiry_s", "_heard")

    def __init__(self, expiry_s: float) -> None:
        if expiry_s <= 0:
            raise ValueError("member expiry must be positive")
        self._expiry_s = expiry_s
        self._heard: dict[bytes, float] = {}

    def track(self, keys: Iterable[bytes], now: float) -> None:
        """Follow exactly these members; new ones count as heard `now`."""
        wanted = set(keys)
        self._heard = {k: t for k, t in self._heard.items() if k in wanted}
        for key in wanted - self._heard.keys():
            self._heard[key] = now

    def heard(self, key: bytes, now: float) -> None:
        """A tracked member said it is alive."""
        if key in self._heard:
            self._heard[key] = max(self._heard[key], now)

    def postpone(self, key: bytes, now: float) -> None:
        """Start a tracked member's silence over (its removal could not be signed now)."""
        if key in self._heard:
            self._heard[key] = now

    def last_heard(self, key: bytes) -> float | None:
        """When the member was last heard from, if tracked."""
        return self._heard.get(key)

    def next_expiry(self) -> float | None:
        """When the quietest member expires, if any is tracked."""
        if not self._heard:
            return None
        return min(self._heard.values()) + self._expiry_s

    def expired(self, now: float) -> list[bytes]:
        """Members silent for the expiry or longer, quietest first."""
        late = [(t, k) for k, t in self._heard.items() if now - t >= self._expiry_s]
        return [k for _, k in sorted(late)]
