"""What the roster replication core asks its adapter to send, and what it reports."""

from __future__ import annotations

from dataclasses import dataclass

from rms.membership.document import RosterProblem, SignedRoster

__all__ = [
    "Deliver",
    "MessageDropped",
    "NoLongerMember",
    "RosterAccepted",
    "RosterRefused",
    "SyncOutput",
]


@dataclass(frozen=True, slots=True)
class Deliver:
    """Send `data` (one signed envelope) to the member whose node key is `to`."""

    to: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class RosterAccepted:
    """A new version is held: reconfigure the WireGuard peers from it."""

    roster: SignedRoster
    previous: SignedRoster | None
    source: bytes | None  # the member it came from; None if this guardian issued it


@dataclass(frozen=True, slots=True)
class RosterRefused:
    """A member handed us a roster we do not take (rollback, forgery, …)."""

    peer: bytes
    problem: RosterProblem


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """A message was dropped; `peer` is None if it did not even authenticate."""

    peer: bytes | None
    reason: str


@dataclass(frozen=True, slots=True)
class NoLongerMember:
    """The held version no longer lists this node: it left or was removed."""

    roster: SignedRoster


SyncOutput = Deliver | RosterAccepted | RosterRefused | MessageDropped | NoLongerMember
