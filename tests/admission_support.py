"""Seeded identities, a founded VPN, and an in-memory pipe between admission cores."""

from __future__ import annotations

import random
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from rms.admission.events import Close, GuardianOutput, NewcomerOutput, Outcome, Send
from rms.admission.guardian import Guardian
from rms.admission.newcomer import NewcomerSession
from rms.identity import NodeIdentity
from rms.membership.document import SignedRoster
from rms.membership.issuer import RosterIssuer, found_roster
from rms.membership.ledger import RosterLedger
from rms.membership.roster import Member
from rms.policy import DEFAULT, Policy
from rms.wg.keys import WgPrivateKey

NOW = 1_700_000_000.0
VPN_ID = uuid.UUID("0b1e2c3d-4e5f-8a6b-8c7d-8e9fa0b1c2d3")
OTHER_VPN = uuid.UUID("11111111-2222-8333-8444-555555555555")
GUARDIAN = NodeIdentity.from_seed(bytes([0xA0]) * 32)
STRANGER = NodeIdentity.from_seed(bytes([0xEE]) * 32)


def node(n: int) -> NodeIdentity:
    """The seeded identity of node n (1..99)."""
    return NodeIdentity.from_seed(bytes([n]) * 32)


def place(n: int) -> uuid.UUID:
    """A distinct location or network UUID per n."""
    return uuid.UUID(int=(0xC0DE << 64) | n)


def wg_key(n: int) -> WgPrivateKey:
    """A seeded WireGuard private key."""
    return WgPrivateKey(random.Random(f"wg-{n}").randbytes(32))


def randbytes(seed: object) -> Callable[[int], bytes]:
    """A seeded bytes source for nonces, challenges and box nonces."""
    return random.Random(str(seed)).randbytes


def minter(seed: object) -> Callable[[], WgPrivateKey]:
    """A seeded WireGuard key factory for the guardian."""
    rng = random.Random(f"mint-{seed}")
    return lambda: WgPrivateKey(rng.randbytes(32))


@dataclass(frozen=True)
class Record:
    """Just the fields of a VPN record that the planner and the newcomer read."""

    vpn_id: uuid.UUID = VPN_ID
    soliciting: bool = True
    members: int = 1
    capacity: int = 8
    founder_key: bytes = GUARDIAN.public_key
    guardians: tuple[bytes, ...] = ()


@dataclass
class Vpn:
    """A founded VPN: the guardian's ledger and issuer."""

    ledger: RosterLedger
    issuer: RosterIssuer

    @property
    def roster(self) -> SignedRoster:
        current = self.ledger.current
        assert current is not None
        return current


def found(policy: Policy = DEFAULT, guardian: NodeIdentity = GUARDIAN, now: float = NOW) -> Vpn:
    """A VPN founded by `guardian`, its only member so far."""
    first = found_roster(
        guardian,
        VPN_ID,
        wg_public_key=wg_key(0).public_key(),
        location=place(1000),
        network=place(2000),
        now=now,
        policy=policy,
    )
    ledger = RosterLedger(VPN_ID, {guardian.public_key}, policy, first)
    return Vpn(ledger, RosterIssuer(ledger, guardian))


def member_of(n: int, *, location: int | None = None, network: int | None = None) -> Member:
    """Node n as a roster member with its own (or the given) location and network."""
    return Member.new(
        VPN_ID,
        node(n).public_key,
        wg_public_key=wg_key(n).public_key(),
        location=place(location if location is not None else n),
        network=place(network if network is not None else 100 + n),
        joined_ms=int(NOW * 1000),
    )


def guardian_core(
    vpn: Vpn, policy: Policy = DEFAULT, seed: object = "g", banned: tuple[bytes, ...] = ()
) -> Guardian:
    """The guardian's admission core with seeded randomness."""
    return Guardian(
        GUARDIAN,
        vpn.issuer,
        policy=policy,
        randbytes=randbytes(f"guardian-{seed}"),
        mint=minter(seed),
        banned=banned,
    )


def session(
    n: int,
    *,
    location: int | None = None,
    network: int | None = None,
    policy: Policy = DEFAULT,
    trusted: frozenset[bytes] | None = None,
    identity: NodeIdentity | None = None,
    attempt: int = 0,
) -> NewcomerSession:
    """A newcomer session for node n (or `identity`) towards VPN_ID; seeded per attempt."""
    return NewcomerSession(
        identity or node(n),
        VPN_ID,
        trusted if trusted is not None else {GUARDIAN.public_key},
        location=place(location if location is not None else n),
        network=place(network if network is not None else 100 + n),
        policy=policy,
        randbytes=randbytes(f"newcomer-{n}-{attempt}"),
    )


@dataclass
class Pipe:
    """One TCP connection between a guardian core and a newcomer session, in memory."""

    guardian: Guardian
    session: NewcomerSession
    conn: int
    events: list[GuardianOutput] = field(default_factory=list)
    to_session: deque[bytes] = field(default_factory=deque)
    to_guardian: deque[bytes] = field(default_factory=deque)
    guardian_closed: bool = False
    session_closed: bool = False

    def open(self, now: float) -> Pipe:
        """Connect: the guardian answers at once (challenge or busy)."""
        self._from_guardian(self.guardian.connection_made(self.conn, now))
        self._from_session(self.session.connection_made(now))
        return self

    def pump(self, now: float) -> Outcome | None:
        """Deliver everything in flight, both ways, until both sides are quiet."""
        while self.to_session or self.to_guardian:
            if self.to_session and not self.session_closed:
                self._from_session(self.session.data_received(self.to_session.popleft(), now))
            else:
                self.to_session.clear()
            if self.to_guardian and not self.guardian_closed:
                outs = self.guardian.data_received(self.conn, self.to_guardian.popleft(), now)
                self._from_guardian(outs)
            else:
                self.to_guardian.clear()
        self._hang_ups(now)
        return self.session.outcome

    def _hang_ups(self, now: float) -> None:
        if self.guardian_closed and not self.session_closed:
            self._from_session(self.session.connection_lost(now))
        if self.session_closed and not self.guardian_closed:
            self.guardian_closed = True
            self.events += self.guardian.connection_lost(self.conn, now)

    def _from_guardian(self, outputs: list[GuardianOutput]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self.to_session.append(out.data)
            elif isinstance(out, Close):
                self.guardian_closed = True
            else:
                self.events.append(out)

    def _from_session(self, outputs: list[NewcomerOutput]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self.to_guardian.append(out.data)
            elif isinstance(out, Close):
                self.session_closed = True


def admit(guardian: Guardian, newcomer: NewcomerSession, conn: int, now: float) -> Outcome:
    """Run a whole exchange in memory and return the newcomer's outcome."""
    outcome = Pipe(guardian, newcomer, conn).open(now).pump(now)
    assert outcome is not None
    return outcome
