"""What the admission cores ask their adapters to do, and what they report.

Cores return ordered lists: `Send` and `Close` are instructions for the adapter (in order:
a refusal is sent before its connection closes); the other dataclasses are events for the
VPN manager. The guardian's events are prefixed `Guest…` or name the slot; the newcomer's
outcomes (`Admitted`, `Refused`, `Busy`, `Failed`) end one exchange.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from ipaddress import IPv6Interface

from rms.admission.fit import Refusal, RefusalCode
from rms.membership.document import SignedRoster
from rms.membership.roster import Member
from rms.wg.keys import WgPrivateKey

__all__ = [
    "Admitted",
    "AdmissionUnconfirmed",
    "Busy",
    "Close",
    "Failed",
    "GuardianEvent",
    "GuardianOutput",
    "GuestDropped",
    "GuestOffered",
    "GuestRefused",
    "GuestTurnedAway",
    "MemberAdmitted",
    "NewcomerOutput",
    "Outcome",
    "Refused",
    "Send",
    "SlotFreed",
    "SlotTaken",
    "SlotTimedOut",
]


@dataclass(frozen=True, slots=True)
class Send:
    """Write `data` (one whole frame) to connection `conn`."""

    data: bytes
    conn: int = 0


@dataclass(frozen=True, slots=True)
class Close:
    """Close connection `conn` once what was sent before has been written."""

    conn: int = 0


@dataclass(frozen=True, slots=True)
class SlotTaken:
    """A guest connection holds the slot and was sent its challenge."""

    conn: int


@dataclass(frozen=True, slots=True)
class GuestTurnedAway:
    """A connection got `admission.busy`: the slot is taken ("slot") or no attempt left ("rate")."""

    conn: int
    reason: str
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class GuestDropped:
    """The guest's connection was dropped: bad input, or it went away (`reason` says which)."""

    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class GuestRefused:
    """The guest was told why it may not join."""

    conn: int
    node_key: bytes | None  # None if it was refused before it said who it is
    refusal: Refusal


@dataclass(frozen=True, slots=True)
class GuestOffered:
    """The guest fits: `roster` (already signed and held) lists it; configure its peer now."""

    conn: int
    member: Member
    roster: SignedRoster


@dataclass(frozen=True, slots=True)
class MemberAdmitted:
    """The newcomer confirmed it holds its key and the roster."""

    member: Member
    roster: SignedRoster


@dataclass(frozen=True, slots=True)
class AdmissionUnconfirmed:
    """An offer went out but no ack came; the member stays until expiry removes it."""

    member: Member


@dataclass(frozen=True, slots=True)
class SlotTimedOut:
    """The guest held the slot for `policy.guest_slot_timeout_s` and was cut off."""

    conn: int


@dataclass(frozen=True, slots=True)
class SlotFreed:
    """The guest slot is free again."""

    conn: int


GuardianEvent = (
    SlotTaken
    | GuestTurnedAway
    | GuestDropped
    | GuestRefused
    | GuestOffered
    | MemberAdmitted
    | AdmissionUnconfirmed
    | SlotTimedOut
    | SlotFreed
)
GuardianOutput = Send | Close | GuardianEvent


@dataclass(frozen=True, slots=True)
class Admitted:
    """We are in: the VPN's roster, our minted WireGuard key, our management address."""

    vpn_id: uuid.UUID
    guardian: bytes
    roster: SignedRoster
    member: Member  # our own entry in the roster
    wg_private_key: WgPrivateKey  # prints as its public half only
    address: IPv6Interface


@dataclass(frozen=True, slots=True)
class Refused:
    """The guardian said no; `code` is the wire code (maybe one a newer release added)."""

    vpn_id: uuid.UUID
    code: str
    text: str

    @property
    def known_code(self) -> RefusalCode | None:
        """The code as this release knows it, or None."""
        return next((c for c in RefusalCode if c.value == self.code), None)


@dataclass(frozen=True, slots=True)
class Busy:
    """The guardian's slot is taken or its attempts are used up; come back later."""

    vpn_id: uuid.UUID
    reason: str
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class Failed:
    """The exchange broke: the path, a timeout, or the guardian misbehaved."""

    vpn_id: uuid.UUID
    reason: str


Outcome = Admitted | Refused | Busy | Failed
NewcomerOutput = Send | Close | Outcome
