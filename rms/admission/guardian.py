"""The guardian's admission core (sans-IO): one guest slot, one newcomer at a time.

Seed: "Only one guest VPN connection is permitted at a time." The slot is taken when a
connection is accepted and the guardian sends its challenge; it is freed when the exchange
ends (ack, refusal, bad input, the connection closing) or after
`policy.guest_slot_timeout_s`. Meanwhile other connections get `admission.busy` with the
time left on the slot; beyond `policy.guest_attempts_per_minute` sessions they get
`admission.busy` with the time until the next attempt. The adapter passes stream bytes and
wall-clock `now` (the envelopes' timestamps are compared across machines) and performs the
returned `Send`/`Close` in order; it re-arms one timer at `next_timer()`.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rms.admission.events import (
    AdmissionUnconfirmed,
    Close,
    GuardianEvent,
    GuardianOutput,
    GuestDropped,
    GuestOffered,
    GuestRefused,
    GuestTurnedAway,
    MemberAdmitted,
    Send,
    SlotFreed,
    SlotTaken,
    SlotTimedOut,
)
from rms.admission.fit import Refusal, RefusalCode, check_fit
from rms.admission.keybox import BOX_NONCE_SIZE, seal_key
from rms.admission.slot import TokenBucket
from rms.identity import NodeIdentity
from rms.membership.document import SignedRoster
from rms.membership.issuer import RosterIssuer
from rms.membership.roster import Member
from rms.net.framing import MAX_FRAME, FrameReader, encode_frame
from rms.policy import DEFAULT, Policy
from rms.wg.keys import WgPrivateKey
from rms.wire import Accepted, Decoder, Envelope, MessageType, Rejected, RejectReason, encode
from rms.wire.messages.admission import (
    ACK,
    BUSY,
    CHALLENGE,
    CHALLENGE_SIZE,
    HELLO,
    MAX_RETRY_AFTER_MS,
    OFFER,
    REFUSE,
    Ack,
    Busy,
    Challenge,
    Hello,
    Offer,
    Refuse,
)
from rms.wire.messages.roster import BodyError

__all__ = ["GUEST_FRAME_CAP", "Guardian"]

GUEST_FRAME_CAP = 4096  # a hello or an ack is a few hundred bytes


@dataclass(slots=True)
class _Session:
    conn: int
    challenge: bytes
    deadline: float
    reader: FrameReader
    newcomer: bytes | None = None
    member: Member | None = None  # set once the offer went out
    roster: SignedRoster | None = None


class Guardian:
    """Admits newcomers to one VPN through its single guest slot."""

    def __init__(
        self,
        identity: NodeIdentity,
        issuer: RosterIssuer,
        *,
        policy: Policy = DEFAULT,
        randbytes: Callable[[int], bytes] = os.urandom,
        mint: Callable[[], WgPrivateKey] = WgPrivateKey.generate,
        decoder: Decoder | None = None,
        banned: Iterable[bytes] = (),
    ) -> None:
        if issuer.key != identity.public_key:
            raise ValueError("the roster issuer must sign with the guardian's own identity")
        self.identity = identity
        self.issuer = issuer
        self.vpn_id = issuer.ledger.vpn_id
        self.policy = policy
        self._randbytes = randbytes
        self._mint = mint
        self._decoder = Decoder() if decoder is None else decoder
        self._banned = set(banned)
        self._bucket = TokenBucket(policy.guest_attempts_per_minute)
        self._slot: _Session | None = None
        self.stats: Counter[str] = Counter()

    @property
    def slot_holder(self) -> int | None:
        """The connection holding the slot, if any."""
        return None if self._slot is None else self._slot.conn

    def ban(self, node_key: bytes) -> None:
        """Refuse this node from now on."""
        self._banned.add(node_key)

    def next_timer(self) -> float | None:
        """When `handle_timer` must run next (wall-clock seconds), if ever."""
        return None if self._slot is None else self._slot.deadline

    def connection_made(self, conn: int, now: float) -> list[GuardianOutput]:
        """A guest connected: challenge it, or tell it to come back later."""
        if self._slot is not None:
            return self._turn_away(conn, "slot", self._slot.deadline - now, now)
        if not self._bucket.take(now):
            return self._turn_away(conn, "rate", self._bucket.wait_s(now), now)
        session = _Session(
            conn,
            self._randbytes(CHALLENGE_SIZE),
            now + self.policy.guest_slot_timeout_s,
            FrameReader(GUEST_FRAME_CAP),
        )
        self._slot = session
        self.stats["sessions"] += 1
        challenge = Challenge(self.vpn_id, session.challenge).body()
        return [self._send(conn, CHALLENGE, challenge, now), SlotTaken(conn)]

    def data_received(self, conn: int, data: bytes, now: float) -> list[GuardianOutput]:
        """Bytes from a guest's stream."""
        session = self._slot
        if session is None or session.conn != conn:
            return []  # a turned-away connection the adapter has not closed yet
        out: list[GuardianOutput] = []
        for frame in session.reader.feed(data):
            out += self._on_frame(session, frame, now)
            if self._slot is not session:
                return out
        if session.reader.error is not None:
            out += self._drop(session, session.reader.error)
        return out

    def connection_lost(self, conn: int, now: float) -> list[GuardianOutput]:
        """The guest's connection closed or broke."""
        session = self._slot
        if session is None or session.conn != conn:
            return []
        self.stats["abandoned"] += 1
        return self._end(session, [GuestDropped(conn, "the connection closed")], close=False)

    def handle_timer(self, now: float) -> list[GuardianOutput]:
        """Cut off a guest that held the slot too long."""
        session = self._slot
        if session is None or now < session.deadline:
            return []
        self.stats["timed_out"] += 1
        refusal = Refusal(RefusalCode.TIMEOUT, "the guest slot timed out; try again later")
        out: list[GuardianOutput] = [self._refuse_frame(session, refusal, now)]
        return out + self._end(session, [SlotTimedOut(session.conn)])

    def _turn_away(self, conn: int, reason: str, wait_s: float, now: float) -> list[GuardianOutput]:
        self.stats[f"busy_{reason}"] += 1
        retry_ms = min(MAX_RETRY_AFTER_MS, max(1, math.ceil(wait_s * 1000)))
        busy = self._send(conn, BUSY, Busy(reason, retry_ms).body(), now)
        return [busy, Close(conn), GuestTurnedAway(conn, reason, retry_ms / 1000)]

    def _on_frame(self, session: _Session, frame: bytes, now: float) -> list[GuardianOutput]:
        result = self._decoder.decode(frame, now)
        if isinstance(result, Rejected) and _clock_is_off(result):
            text = f"your clock is off ({result.detail}); set it (NTP) and try again"
            return self._refuse(session, None, RefusalCode.CLOCK, text, now)
        if not isinstance(result, Accepted):
            return self._drop(session, f"{result.reason.value}: {result.detail}")
        envelope = result.envelope
        if session.member is None:
            return self._on_opening(session, envelope, now)
        return self._on_closing(session, envelope)

    def _on_opening(
        self, session: _Session, envelope: Envelope, now: float
    ) -> list[GuardianOutput]:
        if envelope.msg_type != HELLO:
            text = f"expected an admission.hello, got {envelope.msg_type.name}"
            return self._refuse(session, envelope.sender, RefusalCode.PROTOCOL, text, now)
        try:
            hello = Hello.from_envelope(envelope)
        except BodyError as exc:
            return self._refuse(session, envelope.sender, RefusalCode.PROTOCOL, str(exc), now)
        if hello.challenge != session.challenge:
            text = "the hello does not answer this connection's challenge"
            return self._refuse(session, envelope.sender, RefusalCode.PROTOCOL, text, now)
        session.newcomer = envelope.sender
        return self._on_hello(session, envelope.sender, hello, now)

    def _on_hello(
        self, session: _Session, newcomer: bytes, hello: Hello, now: float
    ) -> list[GuardianOutput]:
        refusal = check_fit(
            self.issuer.current.roster,
            newcomer,
            hello.location,
            hello.network,
            policy=self.policy,
            guardian=self.identity.public_key,
            banned=self._banned,
        )
        if refusal is not None:
            return self._refuse(session, newcomer, refusal.code, refusal.text, now)
        return self._offer(session, newcomer, hello, now)

    def _offer(
        self, session: _Session, newcomer: bytes, hello: Hello, now: float
    ) -> list[GuardianOutput]:
        key = self._mint()
        member = Member.new(
            self.vpn_id,
            newcomer,
            wg_public_key=key.public_key(),
            location=hello.location,
            network=hello.network,
            joined_ms=int(now * 1000),
            endpoint=hello.endpoint,
        )
        roster = self.issuer.add(member, now)
        sealed = seal_key(self.identity, newcomer, key, self._randbytes(BOX_NONCE_SIZE))
        offer = Offer(session.challenge, self.vpn_id, roster.data, member.address, sealed)
        session.member, session.roster = member, roster
        self.stats["offered"] += 1
        sent = self._send(session.conn, OFFER, offer.body(), now)
        return [sent, GuestOffered(session.conn, member, roster)]

    def _on_closing(self, session: _Session, envelope: Envelope) -> list[GuardianOutput]:
        confirmed = (
            envelope.msg_type == ACK
            and envelope.sender == session.newcomer
            and Ack.from_envelope(envelope).challenge == session.challenge
        )
        if not confirmed or session.member is None or session.roster is None:
            return self._drop(session, f"expected the newcomer's ack, got {envelope.msg_type.name}")
        self.stats["admitted"] += 1
        admitted = MemberAdmitted(session.member, session.roster)
        session.member = None  # confirmed: no AdmissionUnconfirmed when the slot ends
        return self._end(session, [admitted])

    def _refuse(
        self, session: _Session, node: bytes | None, code: RefusalCode, text: str, now: float
    ) -> list[GuardianOutput]:
        self.stats[f"refused_{code.value}"] += 1
        refusal = Refusal(code, text)
        sent = self._refuse_frame(session, refusal, now)
        return [sent, *self._end(session, [GuestRefused(session.conn, node, refusal)])]

    def _refuse_frame(self, session: _Session, refusal: Refusal, now: float) -> Send:
        body = Refuse(session.challenge, refusal.code.value, refusal.text).body()
        return self._send(session.conn, REFUSE, body, now)

    def _drop(self, session: _Session, reason: str) -> list[GuardianOutput]:
        self.stats["dropped"] += 1
        return self._end(session, [GuestDropped(session.conn, reason[:120])])

    def _end(
        self, session: _Session, events: list[GuardianEvent], *, close: bool = True
    ) -> list[GuardianOutput]:
        self._slot = None
        out: list[GuardianOutput] = [Close(session.conn)] if close else []
        out += events
        if session.member is not None:
            out.append(AdmissionUnconfirmed(session.member))
        out.append(SlotFreed(session.conn))
        return out

    def _send(self, conn: int, msg_type: MessageType, body: dict[str, object], now: float) -> Send:
        nonce = self._randbytes(16)
        datagram = encode(self.identity, msg_type, body, now, nonce=nonce, max_datagram=MAX_FRAME)
        return Send(encode_frame(datagram), conn)


def _clock_is_off(rejected: Rejected) -> bool:
    """A timestamp outside the window: most likely a newcomer without NTP (a Pi at first boot).

    STALE also names the replay cache's floor under overload, which says nothing about the
    newcomer's clock; the decoder's detail tells the two apart.
    """
    if rejected.reason is RejectReason.FUTURE:
        return True
    return rejected.reason is RejectReason.STALE and "floor" not in rejected.detail
