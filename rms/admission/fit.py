"""Whether a newcomer fits a VPN, and if not, why (seed: "VPN size and constitution").

The checks, in order: already a member, banned, this guardian no longer speaks for the VPN,
the VPN is full, too many members from the newcomer's network, too many at its location.
Diversity is what makes a VPN survive: members behind one network endpoint or in one place
tend to disappear together (DESIGN.md, "Discovery and admission").
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from rms.membership.roster import Roster
from rms.policy import Policy

__all__ = ["Refusal", "RefusalCode", "check_fit"]


class RefusalCode(enum.Enum):
    """The reason codes of `admission.refuse` (docs/admission.md, "Refusals")."""

    MEMBER = "member"  # already a member
    BANNED = "banned"
    CLOSED = "closed"  # this guardian no longer admits for the VPN
    FULL = "full"
    NETWORK = "network"  # too many members from the newcomer's network
    LOCATION = "location"  # too many members at the newcomer's location
    PROTOCOL = "protocol"  # the newcomer broke the exchange
    CLOCK = "clock"  # the newcomer's clock is outside the wire's timestamp window
    TIMEOUT = "timeout"  # the slot timed out


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refusal: the code for programs and a sentence for people."""

    code: RefusalCode
    text: str


def check_fit(
    roster: Roster,
    newcomer: bytes,
    location: uuid.UUID,
    network: uuid.UUID,
    *,
    policy: Policy,
    guardian: bytes,
    banned: Collection[bytes] = (),
) -> Refusal | None:
    """Why `newcomer` may not join the VPN of `roster`, or None if it fits."""
    return _identity_refusal(roster, newcomer, guardian, banned) or _diversity_refusal(
        roster, location, network, policy
    )


def _identity_refusal(
    roster: Roster, newcomer: bytes, guardian: bytes, banned: Collection[bytes]
) -> Refusal | None:
    if roster.has(newcomer):
        return Refusal(RefusalCode.MEMBER, "already a member of this VPN")
    if newcomer in banned:
        return Refusal(RefusalCode.BANNED, "this node is banned from this VPN")
    if guardian not in roster.guardians:
        return Refusal(RefusalCode.CLOSED, "this guardian no longer admits members to the VPN")
    return None


def _diversity_refusal(
    roster: Roster, location: uuid.UUID, network: uuid.UUID, policy: Policy
) -> Refusal | None:
    size = len(roster.members)
    if size >= policy.vpn_capacity:
        return Refusal(RefusalCode.FULL, f"the VPN is full ({size} of {policy.vpn_capacity})")
    same_network = roster.from_network(network)
    if same_network >= policy.max_members_per_network:
        return Refusal(
            RefusalCode.NETWORK,
            f"too many members from network {network} ({same_network} of "
            f"{policy.max_members_per_network})",
        )
    same_location = roster.at_location(location)
    if same_location >= policy.max_members_per_location:
        return Refusal(
            RefusalCode.LOCATION,
            f"too many members at location {location} ({same_location} of "
            f"{policy.max_members_per_location})",
        )
    return None
