"""The mirror's record store: one record per VPN, merged by the selection rule (sans-IO).

Every record offered here has already been verified (rms.discovery.verify_record). The
store keeps, per VPN id, the record of highest rank (delegation version, then seq); a record
of equal rank but other bytes never replaces the kept one, so nobody can swap a record for
another of the same rank. Records that stopped soliciting are kept too: their higher seq is
what retires the older soliciting records on every other mirror.

Caps: `max_records` in all, and `per_founder` VPNs per founder key (a node founds at most
`policy.vpn_max` VPNs), so one key cannot fill a mirror. Time is an argument.
"""

from __future__ import annotations

import enum
import random
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from rms.discovery import VpnRecord, rank
from rms.policy import DEFAULT

Rank = tuple[int, int]


class Outcome(enum.Enum):
    """What offering a record did."""

    ADDED = "added"  # a VPN the store did not have
    UPDATED = "updated"  # a higher-ranked record replaced the kept one
    UNCHANGED = "unchanged"  # the very record the store keeps
    STALE = "stale"  # lower rank than the kept record
    CONFLICT = "conflict"  # same rank, other bytes: the kept record stays
    FULL = "full"  # a new VPN, but the store holds max_records
    QUOTA = "quota"  # a new VPN, but its founder has per_founder VPNs here

    @property
    def changed(self) -> bool:
        """Whether the store changed (and peers should hear of it)."""
        return self in (Outcome.ADDED, Outcome.UPDATED)


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """How much one mirror keeps."""

    max_records: int = 4096
    per_founder: int = DEFAULT.vpn_max

    def __post_init__(self) -> None:
        if self.max_records < 1 or self.per_founder < 1:
            raise ValueError("store limits must be at least 1")


class RecordStore:
    """The verified records a mirror serves, one per VPN."""

    def __init__(self, limits: StoreLimits | None = None) -> None:
        self.limits = limits or StoreLimits()
        self._records: dict[uuid.UUID, VpnRecord] = {}
        self._per_founder: Counter[bytes] = Counter()

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[VpnRecord]:
        return iter(list(self._records.values()))

    def get(self, vpn_id: uuid.UUID) -> VpnRecord | None:
        """The kept record of a VPN, if any."""
        return self._records.get(vpn_id)

    def offer(self, record: VpnRecord) -> Outcome:
        """Merge one verified record by the selection rule and the caps."""
        kept = self._records.get(record.vpn_id)
        if kept is None:
            return self._add(record)
        if record.raw == kept.raw:
            return Outcome.UNCHANGED
        if rank(record) > rank(kept):
            self._records[record.vpn_id] = record
            return Outcome.UPDATED
        return Outcome.STALE if rank(record) < rank(kept) else Outcome.CONFLICT

    def _add(self, record: VpnRecord) -> Outcome:
        if len(self._records) >= self.limits.max_records:
            return Outcome.FULL
        if self._per_founder[record.founder_key] >= self.limits.per_founder:
            return Outcome.QUOTA
        self._records[record.vpn_id] = record
        self._per_founder[record.founder_key] += 1
        return Outcome.ADDED

    def expire(self, now: float) -> list[VpnRecord]:
        """Drop the records expired at wall-clock `now` (s); return them."""
        now_ms = int(now * 1000)
        gone = [r for r in self._records.values() if r.expires_at <= now_ms]
        for record in gone:
            del self._records[record.vpn_id]
            self._per_founder[record.founder_key] -= 1
            if self._per_founder[record.founder_key] <= 0:
                del self._per_founder[record.founder_key]
        return gone

    def soliciting(self) -> list[VpnRecord]:
        """The records of VPNs still looking for members, in a stable order."""
        return sorted(
            (r for r in self._records.values() if r.soliciting), key=lambda r: r.vpn_id.bytes
        )

    def select(self, n: int, rng: random.Random) -> list[VpnRecord]:
        """A random selection of up to `n` soliciting records (one feed's worth)."""
        candidates = self.soliciting()
        return rng.sample(candidates, min(max(n, 0), len(candidates)))

    def digest(self) -> dict[uuid.UUID, Rank]:
        """What the store holds, VPN id to rank: the summary anti-entropy compares."""
        return {vpn_id: rank(r) for vpn_id, r in self._records.items()}

    def lacks(self, peer: Mapping[uuid.UUID, Rank]) -> bool:
        """Whether a peer's digest names a VPN we do not have or a higher rank than ours."""
        return any(
            vpn_id not in self._records or theirs > rank(self._records[vpn_id])
            for vpn_id, theirs in peer.items()
        )

    def newer_than(self, peer: Mapping[uuid.UUID, Rank]) -> list[VpnRecord]:
        """Our records that a peer's digest lacks or holds at a lower rank."""
        return [r for vpn_id, r in self._records.items() if peer.get(vpn_id, (-1, -1)) < rank(r)]
