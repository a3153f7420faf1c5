"""A guardian's record of when it last heard from each member (kept out of the roster).

Putting `last_seen` in the signed roster would need a new version for every heartbeat;
instead each guardian keeps it locally. A member it starts tracking counts as heard at that
moment, so a restart never expires the whole VPN at once. A member added while the guardian
runs is on probation until first heard: it must speak within `probation_s`, so an admission
the newcomer never took up (its ack lost, its guest link torn down, its VPN failing locally)
leaves no silent member in the roster for the whole expiry.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Liveness"]


class Liveness:
    """Last-heard times of members, and who has been silent longer than `expiry_s`."""

    __slots__ = ("_expiry_s", "_heard", "_probation_s", "_unproven")

    def __init__(self, expiry_s: float, probation_s: float | None = None) -> None:
        probation = expiry_s if probation_s is None else probation_s
        if expiry_s <= 0 or not 0 < probation <= expiry_s:
            raise ValueError("member expiry must be positive, and probation no longer")
        self._expiry_s = expiry_s
        self._probation_s = probation
        self._heard: dict[bytes, float] = {}
        self._unproven: set[bytes] = set()  # added on probation, not heard from since

    def track(self, keys: Iterable[bytes], now: float, *, probation: bool = False) -> None:
        """Follow exactly these members; new ones count as heard `now` (on probation if
        `probation`: they expire after `probation_s` unless heard from first)."""
        wanted = set(keys)
        self._heard = {k: t for k, t in self._heard.items() if k in wanted}
        self._unproven &= wanted
        for key in wanted - self._heard.keys():
            self._heard[key] = now
            if probation:
                self._unproven.add(key)

    def heard(self, key: bytes, now: float) -> None:
        """A tracked member said it is alive."""
        if key in self._heard:
            self._heard[key] = max(self._heard[key], now)
            self._unproven.discard(key)

    def on_probation(self, key: bytes) -> bool:
        """Whether the member was added on probation and has not been heard from since."""
        return key in self._unproven

    def postpone(self, key: bytes, now: float) -> None:
        """Start a tracked member's silence over (its removal could not be signed now)."""
        if key in self._heard:
            self._heard[key] = now
            self._unproven.discard(key)

    def last_heard(self, key: bytes) -> float | None:
        """When the member was last heard from, if tracked."""
        return self._heard.get(key)

    def next_expiry(self) -> float | None:
        """When the quietest member expires, if any is tracked."""
        if not self._heard:
            return None
        return min(self._deadline(k, t) for k, t in self._heard.items())

    def expired(self, now: float) -> list[bytes]:
        """Members silent past their deadline, quietest first."""
        late = [(t, k) for k, t in self._heard.items() if now >= self._deadline(k, t)]
        return [k for _, k in sorted(late)]

    def _deadline(self, key: bytes, heard: float) -> float:
        return heard + (self._probation_s if key in self._unproven else self._expiry_s)
