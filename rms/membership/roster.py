"""A VPN's roster: who its members are and how to reach them, as plain immutable values.

The roster is the one source every member configures its WireGuard peers from (DESIGN.md,
"The overlay": "its roster is signed and replicated among members"). Each change makes a
new version with the next sequence number; `rms.membership.document` signs and verifies
versions, `rms.membership.ledger` decides which version a node holds.

Liveness is deliberately not in the roster: a `last_seen` field would need a new signed
version for every heartbeat. Guardians keep liveness to themselves and remove a member that
stays silent for `policy.member_expiry_s` (docs/admission.md, "Expiry").
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv6Address

from rms.identity import node_id_of
from rms.overlay import member_address
from rms.policy import Policy
from rms.wg.keys import WgPublicKey
from rms.wire.messages.roster import Endpoint

__all__ = ["MAX_GUARDIANS", "MAX_ROSTER_MEMBERS", "Endpoint", "Member", "Roster"]

MAX_ROSTER_MEMBERS = 128  # a hard cap for the format; the policy's capacity is lower
MAX_GUARDIANS = 16


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a VPN as its roster lists it."""

    node_key: bytes  # ed25519 public key: the member's identity
    wg_public_key: WgPublicKey
    address: IPv6Address  # management address, rms.overlay.member_address
    location: uuid.UUID
    network: uuid.UUID
    joined_ms: int  # wall clock, ms since the epoch
    endpoint: Endpoint | None = None  # public IP and port; None until the member says

    @classmethod
    def new(
        cls,
        vpn_id: uuid.UUID,
        node_key: bytes,
        *,
        wg_public_key: WgPublicKey,
        location: uuid.UUID,
        network: uuid.UUID,
        joined_ms: int,
        endpoint: Endpoint | None = None,
    ) -> Member:
        """A member of `vpn_id`, its management address derived from its key."""
        address = member_address(vpn_id, node_id_of(node_key)).ip
        return cls(node_key, wg_public_key, address, location, network, joined_ms, endpoint)

    @property
    def node_id(self) -> bytes:
        """The member's node id, SHA-256 of its key."""
        return node_id_of(self.node_key)


@dataclass(frozen=True, slots=True)
class Roster:
    """One version of a VPN's membership."""

    vpn_id: uuid.UUID
    seq: int
    issued_ms: int
    guardians: tuple[bytes, ...]
    members: tuple[Member, ...]

    def member(self, node_key: bytes) -> Member | None:
        """The member with this node key, if any."""
        return next((m for m in self.members if m.node_key == node_key), None)

    def has(self, node_key: bytes) -> bool:
        """Whether this node key is a member."""
        return self.member(node_key) is not None

    def keys(self) -> frozenset[bytes]:
        """The node keys of all members."""
        return frozenset(m.node_key for m in self.members)

    def from_network(self, network: uuid.UUID) -> int:
        """How many members reach the internet through `network`."""
        return sum(1 for m in self.members if m.network == network)

    def at_location(self, location: uuid.UUID) -> int:
        """How many members sit at `location`."""
        return sum(1 for m in self.members if m.location == location)

    def wg_key_in_use(self, key: WgPublicKey) -> bool:
        """Whether any member already has this WireGuard key."""
        return any(m.wg_public_key == key for m in self.members)

    def successor(self, members: Iterable[Member], now_ms: int) -> Roster:
        """The next version with these members; issued no earlier than this one."""
        return replace(
            self, seq=self.seq + 1, issued_ms=max(now_ms, self.issued_ms), members=tuple(members)
        )

    def adding(self, member: Member, now_ms: int) -> Roster:
        """The next version with `member` added; a duplicate is our bug."""
        if self.has(member.node_key) or self.wg_key_in_use(member.wg_public_key):
            raise ValueError("the node or its WireGuard key is already in the roster")
        return self.successor((*self.members, member), now_ms)

    def removing(self, node_key: bytes, now_ms: int) -> Roster:
        """The next version without the member `node_key`."""
        self._require(node_key)
        return self.successor((m for m in self.members if m.node_key != node_key), now_ms)

    def rotating(self, node_key: bytes, wg_public_key: WgPublicKey, now_ms: int) -> Roster:
        """The next version where the member `node_key` has a new WireGuard key."""
        self._require(node_key)
        if self.wg_key_in_use(wg_public_key):
            raise ValueError("that WireGuard key is already in the roster")
        return self._changing(node_key, now_ms, lambda m: replace(m, wg_public_key=wg_public_key))

    def moving(self, node_key: bytes, endpoint: Endpoint, now_ms: int) -> Roster:
        """The next version where the member `node_key` listens at `endpoint`."""
        self._require(node_key)
        return self._changing(node_key, now_ms, lambda m: replace(m, endpoint=endpoint))

    def _changing(self, node_key: bytes, now_ms: int, change: Callable[[Member], Member]) -> Roster:
        members = (change(m) if m.node_key == node_key else m for m in self.members)
        return self.successor(members, now_ms)

    def _require(self, node_key: bytes) -> None:
        if not self.has(node_key):
            raise ValueError("no such member in the roster")

    def problem(self, policy: Policy) -> str | None:
        """What makes this version invalid under `policy`, or None."""
        if not self.guardians or len(self.guardians) > MAX_GUARDIANS:
            return f"{len(self.guardians)} guardians, allowed 1..{MAX_GUARDIANS}"
        if len(set(self.guardians)) != len(self.guardians):
            return "a guardian is listed twice"
        if len(self.members) > min(policy.vpn_capacity, MAX_ROSTER_MEMBERS):
            return f"{len(self.members)} members, the capacity is {policy.vpn_capacity}"
        if len(self.keys()) != len(self.members):
            return "a node is listed twice"
        if len({m.wg_public_key for m in self.members}) != len(self.members):
            return "a WireGuard key is listed twice"
        return self._address_problem()

    def _address_problem(self) -> str | None:
        for m in self.members:
            if m.address != member_address(self.vpn_id, m.node_id).ip:
                return "a member's management address does not match its key"
        return None
