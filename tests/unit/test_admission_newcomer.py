"""The newcomer's session: it takes only an offer that holds together, and never raises."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import pytest

from rms.admission.events import Admitted, Busy, Close, Failed, Refused, Send
from rms.admission.keybox import open_key, seal_key
from rms.admission.newcomer import NewcomerSession, session_for
from rms.membership.document import sign_roster
from rms.net.framing import FrameReader, encode_frame
from rms.overlay import member_address
from rms.wg.keys import WgPrivateKey
from rms.wire import Accepted, Decoder, Envelope, encode
from rms.wire.messages.admission import (
    BUSY,
    CHALLENGE,
    OFFER,
    REFUSE,
    Challenge,
    Hello,
    Offer,
    Refuse,
)
from rms.wire.messages.admission import Busy as BusyMsg
from tests.admission_support import (
    GUARDIAN,
    NOW,
    OTHER_VPN,
    STRANGER,
    VPN_ID,
    Record,
    found,
    member_of,
    node,
    place,
    session,
)

NONCE = bytes(range(16))


def frame(msg_type: object, body: dict[str, object], who: object = GUARDIAN) -> bytes:
    return encode_frame(encode(who, msg_type, body, NOW))  # type: ignore[arg-type]


def decoded(send: Send) -> Envelope:
    (data,) = FrameReader().feed(send.data)
    result = Decoder().decode(data, NOW)
    assert isinstance(result, Accepted)
    return result.envelope


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def challenged(s: NewcomerSession) -> None:
    s.connection_made(NOW)
    (hello,) = s.data_received(frame(CHALLENGE, Challenge(VPN_ID, NONCE).body()), NOW)
    assert isinstance(hello, Send)
    assert Hello.from_envelope(decoded(hello)).challenge == NONCE


def offer_for(n: int, **changes: object) -> Offer:
    """An offer a well-behaved guardian would make to node n, with `changes` applied."""
    vpn = found()
    key = WgPrivateKey(random.Random(n).randbytes(32))
    member = dataclasses.replace(member_of(n), wg_public_key=key.public_key())
    signed = vpn.issuer.add(member, NOW)
    sealed = seal_key(GUARDIAN, node(n).public_key, key, bytes(24))
    offer = Offer(NONCE, VPN_ID, signed.data, member.address, sealed)
    return dataclasses.replace(offer, **changes)  # type: ignore[arg-type]


def test_a_good_offer_is_taken_and_acked() -> None:
    s = session(5)
    challenged(s)
    outputs = s.data_received(frame(OFFER, offer_for(5).body()), NOW)
    ack, close, outcome = outputs
    assert isinstance(ack, Send) and close == Close()
    assert decoded(ack).body == {"challenge": NONCE}
    assert isinstance(outcome, Admitted) and s.outcome == outcome
    assert outcome.address == member_address(VPN_ID, node(5).node_id)
    assert outcome.member.node_key == node(5).public_key
    assert "WgPrivateKey(public=" in repr(outcome)  # the key never prints


def test_the_sealed_key_opens_only_for_the_intended_newcomer() -> None:
    key = WgPrivateKey(bytes(range(32)))
    sealed = seal_key(GUARDIAN, node(5).public_key, key, bytes(24))
    assert open_key(node(5), GUARDIAN.public_key, sealed) == key
    assert open_key(node(6), GUARDIAN.public_key, sealed) is None
    assert open_key(node(5), STRANGER.public_key, sealed) is None
    assert open_key(node(5), GUARDIAN.public_key, sealed[:-1] + b"\x00") is None
    assert key.raw not in sealed


def test_an_offer_meant_for_another_node_fails() -> None:
    s = session(6)
    challenged(s)
    (_, outcome) = s.data_received(frame(OFFER, offer_for(5).body()), NOW)
    assert isinstance(outcome, Failed) and "does not open" in outcome.reason


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda o: dataclasses.replace(o, challenge=bytes(16)), "another challenge"),
        (lambda o: dataclasses.replace(o, vpn_id=OTHER_VPN), "another challenge or VPN"),
        (lambda o: dataclasses.replace(o, sealed_key=bytes(72)), "does not open"),
        (lambda o: dataclasses.replace(o, roster=flip(o.roster, 10)), "roster bad_signature"),
        (lambda o: dataclasses.replace(o, address=member_of(6).address), "address"),
        (lambda o: dataclasses.replace(o, roster=found().roster.data), "does not list us"),
    ],
)
def test_an_offer_that_does_not_hold_together_fails(
    change: Callable[[Offer], Offer], words: str
) -> None:
    s = session(5)
    challenged(s)
    (_, outcome) = s.data_received(frame(OFFER, change(offer_for(5)).body()), NOW)
    assert isinstance(outcome, Failed) and words in outcome.reason


def test_a_roster_listing_another_location_fails() -> None:
    vpn = found()
    key = WgPrivateKey(random.Random(5).randbytes(32))
    member = dataclasses.replace(member_of(5, location=9), wg_public_key=key.public_key())
    signed = vpn.issuer.add(member, NOW)
    sealed = seal_key(GUARDIAN, node(5).public_key, key, bytes(24))
    s = session(5)
    challenged(s)
    offer = Offer(NONCE, VPN_ID, signed.data, member.address, sealed)
    (_, outcome) = s.data_received(frame(OFFER, offer.body()), NOW)
    assert isinstance(outcome, Failed) and "location" in outcome.reason


def test_a_roster_signed_by_someone_else_fails() -> None:
    vpn = found()
    roster = dataclasses.replace(vpn.roster.roster, guardians=(STRANGER.public_key,))
    forged = sign_roster(STRANGER, roster)
    s = session(5)
    challenged(s)
    offer = dataclasses.replace(offer_for(5), roster=forged.data)
    (_, outcome) = s.data_received(frame(OFFER, offer.body()), NOW)
    assert isinstance(outcome, Failed) and "untrusted_signer" in outcome.reason


def test_a_challenge_from_an_unknown_guardian_fails() -> None:
    s = session(5)
    s.connection_made(NOW)
    body = Challenge(VPN_ID, NONCE).body()
    (_, outcome) = s.data_received(frame(CHALLENGE, body, STRANGER), NOW)
    assert isinstance(outcome, Failed) and "record names" in outcome.reason


def test_a_challenge_for_another_vpn_fails() -> None:
    s = session(5)
    s.connection_made(NOW)
    (_, outcome) = s.data_received(frame(CHALLENGE, Challenge(OTHER_VPN, NONCE).body()), NOW)
    assert isinstance(outcome, Failed) and str(OTHER_VPN) in outcome.reason


def test_an_offer_from_another_key_fails() -> None:
    s = session(5, trusted=frozenset({GUARDIAN.public_key, STRANGER.public_key}))
    challenged(s)
    (_, outcome) = s.data_received(frame(OFFER, offer_for(5).body(), STRANGER), NOW)
    assert isinstance(outcome, Failed) and "other than the guardian" in outcome.reason


def test_busy_and_refused_end_the_exchange() -> None:
    s = session(5)
    s.connection_made(NOW)
    (_, busy) = s.data_received(frame(BUSY, BusyMsg("slot", 1500).body()), NOW)
    assert busy == Busy(VPN_ID, "slot", 1.5)
    r = session(5, attempt=1)
    challenged(r)
    (_, refused) = r.data_received(
        frame(REFUSE, Refuse(NONCE, "full", "the VPN is full").body()), NOW
    )
    assert refused == Refused(VPN_ID, "full", "the VPN is full")
    other = session(5, attempt=2)
    challenged(other)
    outputs = other.data_received(frame(REFUSE, Refuse(bytes(16), "full", "x").body()), NOW)
    assert isinstance(outputs[-1], Failed)


def test_unknown_refusal_codes_are_kept() -> None:
    s = session(5)
    challenged(s)
    (_, refused) = s.data_received(frame(REFUSE, Refuse(NONCE, "newer", "why").body()), NOW)
    assert isinstance(refused, Refused) and refused.code == "newer" and refused.known_code is None


def test_timeout_and_hang_up() -> None:
    s = session(5)
    s.connection_made(NOW)
    assert s.next_timer() == NOW + 20
    assert s.handle_timer(NOW + 19) == []
    assert s.handle_timer(NOW + 20)[-1] == Failed(VPN_ID, "no answer within 20 s")
    assert s.next_timer() is None and s.handle_timer(NOW + 30) == []
    h = session(5, attempt=1)
    challenged(h)
    (_, lost) = h.connection_lost(NOW)
    assert isinstance(lost, Failed) and "awaiting the answer" in lost.reason


def test_garbage_and_oversized_frames_fail_without_raising() -> None:
    rng = random.Random(3)
    for i in range(200):
        s = session(5, attempt=i)
        s.connection_made(NOW)
        s.data_received(rng.randbytes(rng.randrange(0, 100)), NOW)
        s.data_received(encode_frame(rng.randbytes(rng.randrange(0, 300))), NOW)
        assert s.outcome is None or isinstance(s.outcome, Failed)
    big = session(5, attempt=999)
    big.connection_made(NOW)
    (_, outcome) = big.data_received((1 << 30).to_bytes(4, "big"), NOW)
    assert isinstance(outcome, Failed) and "cap" in outcome.reason


def test_nothing_after_the_outcome_counts() -> None:
    s = session(5)
    s.connection_made(NOW)
    two = frame(BUSY, BusyMsg("rate", 10).body()) + frame(
        CHALLENGE, Challenge(VPN_ID, NONCE).body()
    )
    outputs = s.data_received(two, NOW)
    assert outputs[-1] == Busy(VPN_ID, "rate", 0.01)
    assert s.data_received(b"more", NOW) == [] and s.connection_lost(NOW) == []


def test_session_for_a_record_trusts_founder_and_guardians() -> None:
    record = Record(founder_key=node(1).public_key, guardians=(GUARDIAN.public_key,))
    s = session_for(record, node(5), location=place(5), network=place(105))
    assert s.trusted == {node(1).public_key, GUARDIAN.public_key} and s.vpn_id == VPN_ID
