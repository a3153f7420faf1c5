"""Which roster version a node holds, and which newer versions it takes.

A version is taken if it verifies (`verify_roster`) and outranks the one held: a higher
sequence number, or the same number with a higher SHA-256 digest. The digest tie-break only
matters if two guardians ever sign different versions with one number; it makes every
member settle on the same one, so replication converges instead of flapping. A lower
number is a rollback and is refused: a replayed old roster must not resurrect a removed
member or an old WireGuard key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from rms.membership.document import RosterProblem, RosterReason, SignedRoster, verify_roster
from rms.policy import DEFAULT, Policy

__all__ = ["Adopted", "Held", "RosterLedger", "Verdict", "outranks"]


def outranks(seq: int, digest: bytes, other_seq: int, other_digest: bytes) -> bool:
    """Whether version (seq, digest) wins over (other_seq, other_digest)."""
    return (seq, digest) > (other_seq, other_digest)


@dataclass(frozen=True, slots=True)
class Adopted:
    """The roster is now the version this node holds."""

    roster: SignedRoster
    previous: SignedRoster | None


@dataclass(frozen=True, slots=True)
class Held:
    """This node already holds exactly that version."""

    roster: SignedRoster


Verdict = Adopted | Held | RosterProblem


class RosterLedger:
    """One VPN's current roster on this node and the guardians whose signature it trusts."""

    def __init__(
        self,
        vpn_id: uuid.UUID,
        trusted_guardians: Iterable[bytes],
        policy: Policy = DEFAULT,
        current: SignedRoster | None = None,
    ) -> None:
        self.vpn_id = vpn_id
        self.trusted = frozenset(trusted_guardians)
        self.policy = policy
        self._current: SignedRoster | None = None
        if current is not None and not isinstance(self.consider(current), Adopted):
            raise ValueError("the initial roster is not one this ledger can trust")

    @property
    def current(self) -> SignedRoster | None:
        """The version held, if any."""
        return self._current

    @property
    def seq(self) -> int:
        """The sequence number held; 0 before any roster."""
        return 0 if self._current is None else self._current.seq

    @property
    def digest(self) -> bytes:
        """The digest of the version held; empty before any roster."""
        return b"" if self._current is None else self._current.digest

    def would_take(self, seq: int, digest: bytes) -> bool:
        """Whether a version announced as (seq, digest) would outrank ours."""
        return outranks(seq, digest, self.seq, self.digest)

    def trust(self, guardians: Iterable[bytes]) -> None:
        """Replace the trusted guardian keys (the founder's delegation changed)."""
        self.trusted = frozenset(guardians)

    def receive(self, data: bytes) -> Verdict:
        """Verify peer bytes as a roster of this VPN and take them if they outrank ours."""
        checked = verify_roster(
            data, vpn_id=self.vpn_id, trusted_guardians=self.trusted, policy=self.policy
        )
        if isinstance(checked, RosterProblem):
            return checked
        return self.consider(checked)

    def consider(self, signed: SignedRoster) -> Verdict:
        """Take an already verified roster if it outranks ours."""
        if signed.roster.vpn_id != self.vpn_id:
            return RosterProblem(RosterReason.WRONG_VPN, f"a roster of VPN {signed.roster.vpn_id}")
        if signed.signer not in self.trusted:
            return RosterProblem(RosterReason.UNTRUSTED_SIGNER, "not signed by a trusted guardian")
        held = self._current
        if held is not None and signed.data == held.data:
            return Held(held)
        if held is not None and not outranks(signed.seq, signed.digest, held.seq, held.digest):
            return _refusal(signed, held)
        self._current = signed
        return Adopted(signed, held)


def _refusal(signed: SignedRoster, held: SignedRoster) -> RosterProblem:
    if signed.seq < held.seq:
        return RosterProblem(
            RosterReason.ROLLBACK, f"seq {signed.seq} is older than the held {held.seq}"
        )
    return RosterProblem(RosterReason.CONFLICT_LOST, f"seq {signed.seq} loses the digest tie-break")
