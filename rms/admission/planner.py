"""Which VPN a newcomer knocks at, and when (sans-IO).

From the VPN records the discovery feed gave, the planner keeps those that still solicit
and have room, shuffles them with the caller's seeded `random.Random` (so newcomers spread
over the VPNs instead of all queueing at the first), and tries them in turn. A busy
guardian is retried after a backoff that starts at `policy.guest_backoff_initial_s` and
doubles up to `policy.guest_backoff_max_s`, each delay drawn in [d/2, d] so that racing
newcomers drift apart. The guardian's hint bounds the wait when its slot is taken (the slot
is free by then at the latest) and sets its minimum when its attempts are used up (no
attempt is served before). Retries are bounded by `busy_retries(policy)`: just enough that
even the shortest draws outwait one whole slot. A refusal or a failure moves on to the
next VPN. When none is left, `NoVpnFits` tells the VPN manager to found a new VPN
(docs/management-vpns.md, "Found"); `ClockIsOff` tells it to fix the clock instead.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from rms.admission.events import Admitted, Busy, Failed, Outcome, Refused
from rms.admission.fit import RefusalCode
from rms.policy import DEFAULT, Policy

__all__ = [
    "AdmissionPlanner",
    "Attempt",
    "ClockIsOff",
    "Joined",
    "NoVpnFits",
    "Step",
    "VpnCandidate",
    "Wait",
    "busy_retries",
    "trusted_guardians",
]

RATE_HINT_CAP_S = 60.0  # a guardian's bucket refills completely within a minute


def busy_retries(policy: Policy) -> int:
    """How many busy answers a newcomer takes from one VPN before it moves on."""
    waited, retries = 0.0, 0
    while waited < policy.guest_slot_timeout_s:
        retries += 1
        waited += _base_s(policy, retries) / 2
    return retries


def _base_s(policy: Policy, retry: int) -> float:
    doubled: float = policy.guest_backoff_initial_s * 2.0 ** (retry - 1)
    return min(doubled, policy.guest_backoff_max_s)


class VpnCandidate(Protocol):
    """What the planner reads of a VPN record (rms.discovery.record.VpnRecord is one)."""

    @property
    def vpn_id(self) -> uuid.UUID:
        """The VPN's id."""
        ...

    @property
    def founder_key(self) -> bytes:
        """The founder's node key."""
        ...

    @property
    def guardians(self) -> Sequence[bytes]:
        """The guardians the founder delegated to."""
        ...

    @property
    def soliciting(self) -> bool:
        """Whether the VPN still takes members."""
        ...

    @property
    def members(self) -> int:
        """How many members it has."""
        ...

    @property
    def capacity(self) -> int:
        """How many it may have."""
        ...


C = TypeVar("C", bound=VpnCandidate)


def trusted_guardians(candidate: VpnCandidate) -> frozenset[bytes]:
    """The keys that may challenge a newcomer and sign the roster for this VPN."""
    return frozenset((candidate.founder_key, *candidate.guardians))


@dataclass(frozen=True, slots=True)
class Attempt(Generic[C]):
    """Run one admission exchange at this VPN now (`retry` 0 for the first try)."""

    candidate: C
    retry: int


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do before wall-clock time `until`."""

    until: float


@dataclass(frozen=True, slots=True)
class Joined:
    """Admission succeeded."""

    admitted: Admitted


@dataclass(frozen=True, slots=True)
class ClockIsOff:
    """A guardian says our clock is outside the wire's window: fix the clock, found nothing."""

    refused: Refused


@dataclass(frozen=True, slots=True)
class NoVpnFits:
    """Every candidate was full, refused us, stayed busy or failed: found a new VPN."""

    tried: tuple[tuple[uuid.UUID, str], ...]  # (VPN, why not) in the order tried


Step = Attempt[C] | Wait | Joined | NoVpnFits | ClockIsOff


class AdmissionPlanner(Generic[C]):
    """Chooses the VPN to try next and when; fed with each exchange's outcome."""

    def __init__(
        self,
        candidates: Iterable[C],
        *,
        rng: random.Random,
        policy: Policy = DEFAULT,
        exclude: Collection[uuid.UUID] = (),
        max_busy_retries: int | None = None,
    ) -> None:
        self.policy = policy
        self._rng = rng
        self._max_retries = busy_retries(policy) if max_busy_retries is None else max_busy_retries
        self._queue = _fitting(candidates, exclude)
        rng.shuffle(self._queue)
        self._retry = 0
        self._not_before = float("-inf")
        self._tried: list[tuple[uuid.UUID, str]] = []
        self._joined: Admitted | None = None
        self._clock_off: Refused | None = None

    @property
    def remaining(self) -> int:
        """Candidates not yet given up on, the current one included."""
        return len(self._queue)

    def next_step(self, now: float) -> Step[C]:
        """What to do at wall-clock time `now`."""
        if self._joined is not None:
            return Joined(self._joined)
        if self._clock_off is not None:
            return ClockIsOff(self._clock_off)
        if not self._queue:
            return NoVpnFits(tuple(self._tried))
        if now < self._not_before:
            return Wait(self._not_before)
        return Attempt(self._queue[0], self._retry)

    def record(self, outcome: Outcome, now: float) -> None:
        """The outcome of the attempt `next_step` asked for."""
        if not self._queue or outcome.vpn_id != self._queue[0].vpn_id:
            raise ValueError("an outcome for a VPN the planner did not ask to try")
        if isinstance(outcome, Admitted):
            self._joined = outcome
        elif isinstance(outcome, Busy):
            self._on_busy(outcome, now)
        elif isinstance(outcome, Refused) and outcome.known_code is RefusalCode.CLOCK:
            self._clock_off = outcome  # every guardian would say so; founding would not help
        else:
            self._move_on(_why(outcome))

    def backoff_s(self, retry: int, busy: Busy) -> float:
        """The wait before busy retry number `retry` (1, 2, …) after this busy answer."""
        base = _base_s(self.policy, retry)
        drawn = self._rng.uniform(base / 2, base)
        if busy.reason == "rate":
            return max(drawn, min(busy.retry_after_s, RATE_HINT_CAP_S))
        return max(min(drawn, busy.retry_after_s), self.policy.guest_backoff_initial_s / 2)

    def _on_busy(self, busy: Busy, now: float) -> None:
        self._retry += 1
        if self._retry > self._max_retries:
            self._move_on(f"busy {self._max_retries + 1} times ({busy.reason})")
            return
        self._not_before = now + self.backoff_s(self._retry, busy)

    def _move_on(self, why: str) -> None:
        self._tried.append((self._queue.pop(0).vpn_id, why))
        self._retry = 0
        self._not_before = float("-inf")


def _fitting(candidates: Iterable[C], exclude: Collection[uuid.UUID]) -> list[C]:
    seen = set(exclude)
    kept: list[C] = []
    for c in candidates:
        if c.vpn_id not in seen and c.soliciting and c.members < c.capacity:
            seen.add(c.vpn_id)
            kept.append(c)
    kept.sort(key=lambda c: c.vpn_id)  # the input's order must not leak into the shuffle
    return kept


def _why(outcome: Refused | Failed) -> str:
    if isinstance(outcome, Refused):
        return f"refused ({outcome.code}): {outcome.text}"
    return f"failed: {outcome.reason}"
