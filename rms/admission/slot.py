"""The guardian's attempt budget: a token bucket driven by the time it is given.

`policy.guest_attempts_per_minute` tokens, refilled continuously; each admission session
takes one. A burst of a minute's worth is allowed, then one attempt per 60/N seconds: an
attacker cannot keep the guardian minting keys and signing rosters faster than that.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """`per_minute` tokens at most, refilled at `per_minute` per 60 s of `now`."""

    __slots__ = ("_capacity", "_rate", "_stamp", "_tokens")

    def __init__(self, per_minute: int) -> None:
        if per_minute < 1:
            raise ValueError("a guardian must allow at least one attempt per minute")
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._tokens = self._capacity
        self._stamp: float | None = None

    def _refill(self, now: float) -> None:
        # A clock stepping back adds nothing, and does not make later steps count twice.
        if self._stamp is not None and now > self._stamp:
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        if self._stamp is None or now > self._stamp:
            self._stamp = now

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        self._refill(now)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def wait_s(self, now: float) -> float:
        """Seconds until a token is available."""
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self._rate)
