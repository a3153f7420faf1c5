"""The newcomer's side of one admission exchange (sans-IO).

Seed: "To connect to a VPN a node must first connect to the related guest VPN, establish
its validity with the RMS there and provide the UUIDs for its geographical location and
network endpoint." The session waits for the guardian's challenge, answers with a signed
hello, then checks what comes back. An offer is taken only if everything in it holds
together: signed by the guardian that challenged us (one the VPN's record names), for our
challenge, with a roster that verifies, lists us with our location, network and the public
half of the key in the box, and gives the address our key implies. Anything else ends the
exchange as `Failed`; nothing the guardian sends can make the session raise.
"""

from __future__ import annotations

import enum
import os
import uuid
from collections.abc import Callable, Collection

from rms.admission.events import (
    Admitted,
    Busy,
    Close,
    Failed,
    NewcomerOutput,
    Outcome,
    Refused,
    Send,
)
from rms.admission.keybox import open_key
from rms.admission.planner import VpnCandidate, trusted_guardians
from rms.identity import NodeIdentity
from rms.membership.document import RosterProblem, SignedRoster, verify_roster
from rms.net.framing import MAX_FRAME, FrameReader, encode_frame
from rms.overlay import member_address
from rms.policy import DEFAULT, Policy
from rms.wg.keys import WgPrivateKey
from rms.wire import Accepted, Decoder, Envelope, MessageType, encode
from rms.wire.messages.admission import (
    ACK,
    BUSY,
    CHALLENGE,
    HELLO,
    OFFER,
    REFUSE,
    Ack,
    Challenge,
    Hello,
    Offer,
    Refuse,
)
from rms.wire.messages.admission import Busy as BusyMessage
from rms.wire.messages.roster import Endpoint

__all__ = ["NewcomerSession", "session_for"]


class _Stage(enum.Enum):
    CHALLENGE = "awaiting the challenge"
    ANSWER = "awaiting the answer to our hello"
    DONE = "done"


class NewcomerSession:
    """One admission exchange with one guardian of one VPN."""

    def __init__(
        self,
        identity: NodeIdentity,
        vpn_id: uuid.UUID,
        trusted_guardians: Collection[bytes],
        *,
        location: uuid.UUID,
        network: uuid.UUID,
        endpoint: Endpoint | None = None,
        policy: Policy = DEFAULT,
        randbytes: Callable[[int], bytes] = os.urandom,
        decoder: Decoder | None = None,
    ) -> None:
        self.identity = identity
        self.vpn_id = vpn_id
        self.trusted = frozenset(trusted_guardians)
        self.location, self.network, self.endpoint = location, network, endpoint
        self.policy = policy
        self._randbytes = randbytes
        self._decoder = Decoder() if decoder is None else decoder
        self._reader = FrameReader(MAX_FRAME)
        self._stage = _Stage.CHALLENGE
        self._deadline: float | None = None
        self._guardian = b""
        self._challenge = b""
        self.outcome: Outcome | None = None

    def next_timer(self) -> float | None:
        """When `handle_timer` must run next (wall-clock seconds), if ever."""
        return None if self._stage is _Stage.DONE else self._deadline

    def connection_made(self, now: float) -> list[NewcomerOutput]:
        """The TCP connection to the guardian is up; the exchange has a slot's time."""
        self._deadline = now + self.policy.guest_slot_timeout_s
        return []

    def data_received(self, data: bytes, now: float) -> list[NewcomerOutput]:
        """Bytes from the guardian's stream."""
        out: list[NewcomerOutput] = []
        for frame in self._reader.feed(data):
            if self._stage is _Stage.DONE:
                break
            out += self._on_frame(frame, now)
        if self._reader.error is not None and self._stage is not _Stage.DONE:
            out += self._fail(self._reader.error)
        return out

    def connection_lost(self, now: float) -> list[NewcomerOutput]:
        """The guardian closed the connection, or the path broke."""
        if self._stage is _Stage.DONE:
            return []
        return self._finish(Failed(self.vpn_id, f"the connection closed {self._stage.value}"))

    def handle_timer(self, now: float) -> list[NewcomerOutput]:
        """Give up on a guardian that takes longer than its slot timeout."""
        if self._stage is _Stage.DONE or self._deadline is None or now < self._deadline:
            return []
        return self._fail(f"no answer within {self.policy.guest_slot_timeout_s:g} s")

    def _on_frame(self, frame: bytes, now: float) -> list[NewcomerOutput]:
        result = self._decoder.decode(frame, now)
        if not isinstance(result, Accepted):
            return self._fail(f"bad message from the guardian: {result.reason.value}")
        envelope = result.envelope
        if self._stage is _Stage.CHALLENGE:
            return self._on_opening(envelope, now)
        if envelope.sender != self._guardian:
            return self._fail("a message from a key other than the guardian's")
        if envelope.msg_type == REFUSE:
            return self._on_refuse(Refuse.from_envelope(envelope))
        if envelope.msg_type == OFFER:
            return self._on_offer(Offer.from_envelope(envelope), now)
        return self._fail(f"unexpected {envelope.msg_type.name} after our hello")

    def _on_opening(self, envelope: Envelope, now: float) -> list[NewcomerOutput]:
        if envelope.msg_type == BUSY:
            busy = BusyMessage.from_envelope(envelope)
            return self._finish(Busy(self.vpn_id, busy.reason, busy.retry_after_ms / 1000))
        if envelope.msg_type != CHALLENGE:
            return self._fail(f"expected a challenge, got {envelope.msg_type.name}")
        if envelope.sender not in self.trusted:
            return self._fail("the guardian's key is not one the VPN's record names")
        challenge = Challenge.from_envelope(envelope)
        if challenge.vpn_id != self.vpn_id:
            return self._fail(f"the guardian speaks for VPN {challenge.vpn_id}")
        self._guardian, self._challenge = envelope.sender, challenge.nonce
        self._stage = _Stage.ANSWER
        hello = Hello(challenge.nonce, self.location, self.network, self.endpoint)
        return [self._send(HELLO, hello.body(), now)]

    def _on_refuse(self, refuse: Refuse) -> list[NewcomerOutput]:
        if refuse.challenge != self._challenge:
            return self._fail("a refusal for another challenge")
        return self._finish(Refused(self.vpn_id, refuse.code, refuse.text))

    def _on_offer(self, offer: Offer, now: float) -> list[NewcomerOutput]:
        checked = self._check_offer(offer)
        if isinstance(checked, str):
            return self._fail(f"the offer does not hold together: {checked}")
        ack = self._send(ACK, Ack(self._challenge).body(), now)
        return [ack, *self._finish(checked)]

    def _check_offer(self, offer: Offer) -> Admitted | str:
        if offer.challenge != self._challenge or offer.vpn_id != self.vpn_id:
            return "it answers another challenge or VPN"
        key = open_key(self.identity, self._guardian, offer.sealed_key)
        if key is None:
            return "the sealed key does not open"
        signed = verify_roster(
            offer.roster,
            vpn_id=self.vpn_id,
            trusted_guardians={self._guardian},
            policy=self.policy,
        )
        if isinstance(signed, RosterProblem):
            return f"roster {signed.reason.value}: {signed.detail}"
        return self._check_entry(offer, signed, key)

    def _check_entry(self, offer: Offer, signed: SignedRoster, key: WgPrivateKey) -> Admitted | str:
        me = signed.roster.member(self.identity.public_key)
        address = member_address(self.vpn_id, self.identity.node_id)
        if me is None or me.wg_public_key != key.public_key():
            return "the roster does not list us with the key in the box"
        if (me.location, me.network) != (self.location, self.network):
            return "the roster lists us with another location or network"
        if me.address != address.ip or offer.address != address.ip:
            return "the address is not the one our key implies"
        return Admitted(self.vpn_id, self._guardian, signed, me, key, address)

    def _fail(self, reason: str) -> list[NewcomerOutput]:
        return self._finish(Failed(self.vpn_id, reason[:160]))

    def _finish(self, outcome: Outcome) -> list[NewcomerOutput]:
        self._stage = _Stage.DONE
        self.outcome = outcome
        return [Close(), outcome]

    def _send(self, msg_type: MessageType, body: dict[str, object], now: float) -> Send:
        datagram = encode(self.identity, msg_type, body, now, nonce=self._randbytes(16))
        return Send(encode_frame(datagram))


def session_for(
    candidate: VpnCandidate,
    identity: NodeIdentity,
    *,
    location: uuid.UUID,
    network: uuid.UUID,
    endpoint: Endpoint | None = None,
    policy: Policy = DEFAULT,
) -> NewcomerSession:
    """A session for the VPN of `candidate`, trusting the guardians its record names."""
    return NewcomerSession(
        identity,
        candidate.vpn_id,
        trusted_guardians(candidate),
        location=location,
        network=network,
        endpoint=endpoint,
        policy=policy,
    )
