"""A guardian's side of the roster: founding a VPN's first version and signing new ones.

Every change (admit, remove, rotate a WireGuard key, move an endpoint) becomes a new
version with the next sequence number, signed by this guardian and taken into the ledger at
once, so that the admission core and the replication core of one node always build on the
same version. Requests come from peers, so the methods that serve them return None instead
of raising when there is nothing valid to do.
"""

from __future__ import annotations

import uuid

from rms.membership.document import SignedRoster, sign_roster
from rms.membership.ledger import Adopted, RosterLedger
from rms.membership.roster import Endpoint, Member, Roster
from rms.policy import DEFAULT, Policy
from rms.wg.keys import WgPublicKey
from rms.wire.envelope import Signer

__all__ = ["RosterIssuer", "found_roster"]


def found_roster(
    founder: Signer,
    vpn_id: uuid.UUID,
    *,
    wg_public_key: WgPublicKey,
    location: uuid.UUID,
    network: uuid.UUID,
    now: float,
    endpoint: Endpoint | None = None,
    policy: Policy = DEFAULT,
) -> SignedRoster:
    """A new VPN's first roster (seq 1): the founder, its only guardian and member."""
    now_ms = int(now * 1000)
    founder_member = Member.new(
        vpn_id,
        founder.public_key,
        wg_public_key=wg_public_key,
        location=location,
        network=network,
        joined_ms=now_ms,
        endpoint=endpoint,
    )
    roster = Roster(vpn_id, 1, now_ms, (founder.public_key,), (founder_member,))
    return sign_roster(founder, roster, policy)


class RosterIssuer:
    """Signs new roster versions for a ledger this node is a guardian of."""

    def __init__(self, ledger: RosterLedger, identity: Signer) -> None:
        if identity.public_key not in ledger.trusted:
            raise ValueError("this node is not a trusted guardian of the VPN")
        if ledger.current is None:
            raise ValueError("a guardian needs the VPN's roster first (found_roster)")
        self.ledger = ledger
        self.identity = identity

    @property
    def key(self) -> bytes:
        """This guardian's node key."""
        return self.identity.public_key

    @property
    def current(self) -> SignedRoster:
        """The version the ledger holds."""
        current = self.ledger.current
        if current is None:  # the ledger never drops a roster once it holds one
            raise RuntimeError("the ledger lost its roster")
        return current

    def can_issue(self) -> bool:
        """Whether the held version still lists this node as a guardian."""
        return self.key in self.current.roster.guardians

    def add(self, member: Member, now: float) -> SignedRoster:
        """The next version with `member` admitted (the admission core checked the fit)."""
        return self._issue(self.current.roster.adding(member, _ms(now)))

    def remove(self, node_key: bytes, now: float) -> SignedRoster | None:
        """The next version without `node_key`; None if it is no member or a guardian."""
        roster = self.current.roster
        if not self.can_issue() or not roster.has(node_key) or node_key in roster.guardians:
            return None
        return self._issue(roster.removing(node_key, _ms(now)))

    def rotate(
        self, node_key: bytes, wg_public_key: WgPublicKey, now: float
    ) -> SignedRoster | None:
        """The next version with the member's new WireGuard key; None if not applicable."""
        roster = self.current.roster
        if not self.can_issue() or not roster.has(node_key) or roster.wg_key_in_use(wg_public_key):
            return None
        return self._issue(roster.rotating(node_key, wg_public_key, _ms(now)))

    def move(self, node_key: bytes, endpoint: Endpoint, now: float) -> SignedRoster | None:
        """The next version with the member's new endpoint; None if nothing changes."""
        roster = self.current.roster
        member = roster.member(node_key)
        if not self.can_issue() or member is None or member.endpoint == endpoint:
            return None
        return self._issue(roster.moving(node_key, endpoint, _ms(now)))

    def _issue(self, roster: Roster) -> SignedRoster:
        signed = sign_roster(self.identity, roster, self.ledger.policy)
        if not isinstance(self.ledger.consider(signed), Adopted):
            raise RuntimeError("the ledger refused a version its own guardian signed")
        return signed


def _ms(now: float) -> int:
    return int(now * 1000)
