"""The guardian core: one slot, busy, rate limit, every refusal, and bad guests (time by hand)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

import msgpack
import pytest

from rms.admission.events import (
    AdmissionUnconfirmed,
    Admitted,
    Busy,
    Close,
    GuestDropped,
    GuestOffered,
    GuestRefused,
    GuestTurnedAway,
    MemberAdmitted,
    Refused,
    Send,
    SlotFreed,
    SlotTaken,
    SlotTimedOut,
)
from rms.admission.fit import RefusalCode
from rms.admission.guardian import GUEST_FRAME_CAP, Guardian
from rms.net.framing import FrameReader, encode_frame
from rms.policy import Policy
from rms.wire import Accepted, Decoder, encode
from rms.wire.messages.admission import ACK, HELLO, Challenge, Hello, Refuse
from rms.wire.messages.node import PING, Ping
from tests.admission_support import (
    GUARDIAN,
    NOW,
    VPN_ID,
    Pipe,
    admit,
    found,
    guardian_core,
    member_of,
    node,
    place,
    session,
)

T = TypeVar("T")
SMALL = Policy(vpn_capacity=4, max_members_per_network=2, max_members_per_location=2)


def events_of(outputs: Sequence[object], kind: type[T]) -> list[T]:
    return [o for o in outputs if isinstance(o, kind)]


def held(guardian: Guardian) -> int | None:
    """The slot's holder, read through a call so mypy does not keep an old narrowing."""
    return guardian.slot_holder


def challenge_from(outputs: Sequence[object]) -> bytes:
    """The nonce of the challenge frame the guardian sent."""
    frames = FrameReader().feed(next(o.data for o in outputs if isinstance(o, Send)))
    result = Decoder().decode(frames[0], NOW)
    assert isinstance(result, Accepted)
    return Challenge.from_envelope(result.envelope).nonce


def hello_frame(challenge: bytes, n: int = 5, *, now: float = NOW, who: int | None = None) -> bytes:
    body = Hello(challenge, place(n), place(100 + n)).body()
    return encode_frame(encode(node(who or n), HELLO, body, now))


def refusal_of(outputs: Sequence[object]) -> GuestRefused:
    (refused,) = events_of(outputs, GuestRefused)
    return refused


def test_happy_path_admits_and_frees_the_slot() -> None:
    vpn = found()
    guardian = guardian_core(vpn)
    pipe = Pipe(guardian, session(5), conn=1).open(NOW)
    assert held(guardian) == 1
    outcome = pipe.pump(NOW)
    assert isinstance(outcome, Admitted)
    kinds = [type(e) for e in pipe.events]
    assert kinds == [SlotTaken, GuestOffered, MemberAdmitted, SlotFreed]
    assert held(guardian) is None and guardian.next_timer() is None
    roster = vpn.roster.roster
    assert roster.seq == 2 and roster.has(node(5).public_key)
    assert outcome.roster.data == vpn.roster.data
    me = roster.member(node(5).public_key)
    assert me is not None and outcome.wg_private_key.public_key() == me.wg_public_key
    assert guardian.stats["admitted"] == 1


def test_the_offered_roster_is_held_before_the_ack() -> None:
    vpn = found()
    guardian = guardian_core(vpn)
    pipe = Pipe(guardian, session(5), conn=1).open(NOW)
    hello = pipe.session.data_received(pipe.to_session.popleft(), NOW)
    outputs = guardian.data_received(1, next(o.data for o in hello if isinstance(o, Send)), NOW)
    (offered,) = events_of(outputs, GuestOffered)
    assert isinstance(offered, GuestOffered)
    assert vpn.roster.seq == 2 and offered.roster == vpn.roster
    assert held(guardian) == 1  # held until the ack


def test_a_second_guest_is_told_busy_with_the_time_left_on_the_slot() -> None:
    guardian = guardian_core(found())
    guardian.connection_made(1, NOW)
    outputs = guardian.connection_made(2, NOW + 5)
    assert isinstance(outputs[0], Send) and outputs[1] == Close(2)
    (away,) = events_of(outputs, GuestTurnedAway)
    assert away == GuestTurnedAway(2, "slot", 15.0)
    busy = session(6)
    busy.connection_made(NOW + 5)
    (_, outcome) = busy.data_received(outputs[0].data, NOW + 5)
    assert outcome == Busy(VPN_ID, "slot", 15.0)


def test_slot_times_out_and_frees() -> None:
    guardian = guardian_core(found())
    guardian.connection_made(1, NOW)
    assert guardian.next_timer() == NOW + 20.0
    assert guardian.handle_timer(NOW + 19.9) == []
    outputs = guardian.handle_timer(NOW + 20.0)
    assert isinstance(outputs[0], Send) and outputs[1] == Close(1)
    assert events_of(outputs, SlotTimedOut) == [SlotTimedOut(1)]
    assert events_of(outputs, SlotFreed) == [SlotFreed(1)]
    assert held(guardian) is None and guardian.next_timer() is None
    assert guardian.data_received(1, b"late", NOW + 21) == []
    assert events_of(guardian.connection_made(2, NOW + 21), Send)  # the next guest is served


def test_a_timed_out_offer_is_unconfirmed_but_the_member_stays() -> None:
    vpn = found()
    guardian = guardian_core(vpn)
    pipe = Pipe(guardian, session(5), conn=1).open(NOW)
    hello = pipe.session.data_received(pipe.to_session.popleft(), NOW)
    guardian.data_received(1, next(o.data for o in hello if isinstance(o, Send)), NOW)
    outputs = guardian.handle_timer(NOW + 20)
    unconfirmed = events_of(outputs, AdmissionUnconfirmed)
    assert [u.member.node_key for u in unconfirmed] == [node(5).public_key]
    assert vpn.roster.roster.has(node(5).public_key)  # expiry removes it if it never shows up


def test_rate_limit_turns_guests_away_until_a_token_refills() -> None:
    guardian = guardian_core(found(), Policy(guest_attempts_per_minute=3))
    for conn in range(1, 4):
        guardian.connection_made(conn, NOW)
        guardian.connection_lost(conn, NOW)
    outputs = guardian.connection_made(4, NOW)
    (away,) = events_of(outputs, GuestTurnedAway)
    assert away == GuestTurnedAway(4, "rate", 20.0)
    assert events_of(guardian.connection_made(5, NOW + 19.9), GuestTurnedAway)
    assert held(guardian) is None
    guardian.connection_made(6, NOW + 20.0)
    assert held(guardian) == 6


def test_busy_guests_do_not_use_up_attempts() -> None:
    guardian = guardian_core(found(), Policy(guest_attempts_per_minute=2))
    guardian.connection_made(1, NOW)
    for conn in range(2, 50):
        guardian.connection_made(conn, NOW)
    guardian.connection_lost(1, NOW)
    guardian.connection_made(50, NOW)
    assert held(guardian) == 50


@pytest.mark.parametrize(
    ("existing", "newcomer", "code", "words"),
    [
        ([(11, 11, 111), (12, 12, 112), (13, 13, 113)], (5, 5, 105), RefusalCode.FULL, "full"),
        ([(11, 11, 7), (12, 12, 7)], (5, 5, 7), RefusalCode.NETWORK, "too many members from"),
        ([(11, 3, 111), (12, 3, 112)], (5, 3, 105), RefusalCode.LOCATION, "at location"),
    ],
)
def test_a_newcomer_that_does_not_fit_is_told_why(
    existing: list[tuple[int, int, int]],
    newcomer: tuple[int, int, int],
    code: RefusalCode,
    words: str,
) -> None:
    vpn = found(SMALL)
    for n, loc, net in existing:
        vpn.issuer.add(member_of(n, location=loc, network=net), NOW)
    guardian = guardian_core(vpn, SMALL)
    n, loc, net = newcomer
    pipe = Pipe(guardian, session(n, location=loc, network=net, policy=SMALL), conn=1)
    outcome = pipe.open(NOW).pump(NOW)
    assert isinstance(outcome, Refused)
    assert outcome.known_code is code and words in outcome.text
    assert refusal_of(pipe.events).refusal.code is code
    assert held(guardian) is None
    assert not vpn.roster.roster.has(node(n).public_key)


def test_network_refusal_names_the_network() -> None:
    vpn = found(SMALL)
    for n in (11, 12):
        vpn.issuer.add(member_of(n, network=7), NOW)
    outcome = admit(guardian_core(vpn, SMALL), session(5, network=7, policy=SMALL), 1, NOW)
    assert isinstance(outcome, Refused)
    assert outcome.text == f"too many members from network {place(7)} (2 of 2)"


def test_already_a_member_and_banned_are_refused() -> None:
    vpn = found()
    guardian = guardian_core(vpn, banned=(node(6).public_key,))
    assert isinstance(admit(guardian, session(5), 1, NOW), Admitted)
    again = admit(guardian, session(5, attempt=1), 2, NOW + 1)
    assert isinstance(again, Refused) and again.known_code is RefusalCode.MEMBER
    banned = admit(guardian, session(6), 3, NOW + 2)
    assert isinstance(banned, Refused) and banned.known_code is RefusalCode.BANNED
    guardian.ban(node(7).public_key)
    later = admit(guardian, session(7), 4, NOW + 3)
    assert isinstance(later, Refused) and later.known_code is RefusalCode.BANNED


def test_the_guardians_own_identity_is_already_a_member() -> None:
    outcome = admit(guardian_core(found()), session(0, identity=GUARDIAN), 1, NOW)
    assert isinstance(outcome, Refused) and outcome.known_code is RefusalCode.MEMBER


def test_hello_with_the_wrong_challenge_is_refused() -> None:
    guardian = guardian_core(found())
    challenge = challenge_from(guardian.connection_made(1, NOW))
    wrong = bytes(b ^ 1 for b in challenge)
    outputs = guardian.data_received(1, hello_frame(wrong), NOW)
    assert refusal_of(outputs).refusal.code is RefusalCode.PROTOCOL
    assert Close(1) in outputs and held(guardian) is None


def test_a_hello_replayed_into_a_later_session_fails() -> None:
    vpn = found()
    guardian = guardian_core(vpn)
    challenge = challenge_from(guardian.connection_made(1, NOW))
    frame = hello_frame(challenge)
    guardian.data_received(1, frame, NOW)  # offered; never acked
    guardian.handle_timer(NOW + 20)
    guardian.connection_made(2, NOW + 21)
    outputs = guardian.data_received(2, frame, NOW + 21)
    (dropped,) = events_of(outputs, GuestDropped)
    assert "replayed" in dropped.reason
    # Re-signed with a fresh nonce it is still the old challenge: refused, nothing issued.
    seq = vpn.roster.seq
    guardian.connection_made(3, NOW + 60)
    outputs = guardian.data_received(3, hello_frame(challenge, now=NOW + 60), NOW + 60)
    assert refusal_of(outputs).refusal.code is RefusalCode.PROTOCOL
    assert vpn.roster.seq == seq


def test_forged_signature_is_dropped() -> None:
    guardian = guardian_core(found())
    challenge = challenge_from(guardian.connection_made(1, NOW))
    frame = bytearray(hello_frame(challenge))
    frame[10] ^= 0xFF  # inside the signature
    outputs = guardian.data_received(1, bytes(frame), NOW)
    (dropped,) = events_of(outputs, GuestDropped)
    assert "bad_signature" in dropped.reason
    assert events_of(outputs, SlotFreed)
    assert held(guardian) is None


def test_wrong_message_type_is_refused() -> None:
    guardian = guardian_core(found())
    guardian.connection_made(1, NOW)
    ping = encode_frame(encode(node(5), PING, Ping(b"x").body(), NOW))
    refused = refusal_of(guardian.data_received(1, ping, NOW))
    assert (
        refused.refusal.code is RefusalCode.PROTOCOL and "admission.hello" in refused.refusal.text
    )
    assert refused.node_key == node(5).public_key


@pytest.mark.parametrize(
    "frame",
    [
        encode_frame(b"garbage bytes, not an envelope"),
        encode_frame(b""),
        encode_frame(bytes(64) + msgpack.packb([1, "admission.hello", b"k", 1, b"n", {}])),
        encode_frame(bytes(200)),
    ],
)
def test_garbage_frames_are_dropped(frame: bytes) -> None:
    guardian = guardian_core(found())
    guardian.connection_made(1, NOW)
    outputs = guardian.data_received(1, frame, NOW)
    assert events_of(outputs, GuestDropped)
    assert Close(1) in outputs
    assert held(guardian) is None


def test_oversized_frame_is_dropped_before_it_is_buffered() -> None:
    guardian = guardian_core(found())
    guardian.connection_made(1, NOW)
    outputs = guardian.data_received(1, (GUEST_FRAME_CAP + 1).to_bytes(4, "big"), NOW)
    (dropped,) = events_of(outputs, GuestDropped)
    assert "cap" in dropped.reason and held(guardian) is None


def test_a_bad_endpoint_in_the_hello_is_refused() -> None:
    guardian = guardian_core(found())
    challenge = challenge_from(guardian.connection_made(1, NOW))
    body = Hello(challenge, place(5), place(105)).body()
    body["endpoint"] = {"ip": bytes(7), "port": 51820}
    frame = encode_frame(encode(node(5), HELLO, body, NOW))
    assert refusal_of(guardian.data_received(1, frame, NOW)).refusal.code is RefusalCode.PROTOCOL


def test_an_ack_from_someone_else_does_not_confirm() -> None:
    guardian = guardian_core(found())
    challenge = challenge_from(guardian.connection_made(1, NOW))
    guardian.data_received(1, hello_frame(challenge), NOW)
    ack = encode_frame(encode(node(6), ACK, {"challenge": challenge}, NOW))
    outputs = guardian.data_received(1, ack, NOW)
    assert events_of(outputs, GuestDropped)
    assert events_of(outputs, AdmissionUnconfirmed)
    assert not events_of(outputs, MemberAdmitted)


def test_a_guest_that_hangs_up_frees_the_slot() -> None:
    guardian = guardian_core(found())
    guardian.connection_made(1, NOW)
    outputs = guardian.connection_lost(1, NOW + 1)
    assert events_of(outputs, GuestDropped)
    assert events_of(outputs, SlotFreed)
    assert Close(1) not in outputs and held(guardian) is None
    assert guardian.connection_lost(1, NOW + 2) == []


def test_frames_split_anywhere_are_reassembled() -> None:
    guardian = guardian_core(found())
    challenge = challenge_from(guardian.connection_made(1, NOW))
    frame = hello_frame(challenge)
    outputs: list[object] = []
    for i in range(len(frame)):
        outputs += guardian.data_received(1, frame[i : i + 1], NOW)
    assert events_of(outputs, GuestOffered)


def test_random_bytes_never_raise() -> None:
    rng = random.Random(7)
    guardian = guardian_core(found())
    for conn in range(1, 300):
        guardian.connection_made(conn, NOW + conn)
        for _ in range(rng.randrange(1, 4)):
            size = rng.randrange(0, 80)
            guardian.data_received(conn, rng.randbytes(size), NOW + conn)
        guardian.connection_lost(conn, NOW + conn)
    assert held(guardian) is None


def test_refusal_is_signed_and_answers_the_challenge() -> None:
    guardian = guardian_core(found())
    challenge = challenge_from(guardian.connection_made(1, NOW))
    outputs = guardian.handle_timer(NOW + 20)
    frames = FrameReader().feed(next(o.data for o in outputs if isinstance(o, Send)))
    result = Decoder().decode(frames[0], NOW + 20)
    assert isinstance(result, Accepted) and result.envelope.sender == GUARDIAN.public_key
    refuse = Refuse.from_envelope(result.envelope)
    assert refuse.challenge == challenge and refuse.code == "timeout"


@pytest.mark.parametrize("skew_s", [-600.0, 300.0])
def test_a_newcomer_with_a_wrong_clock_is_told_so(skew_s: float) -> None:
    guardian = guardian_core(found())
    challenge = challenge_from(guardian.connection_made(1, NOW))
    outputs = guardian.data_received(1, hello_frame(challenge, now=NOW + skew_s), NOW)
    refused = refusal_of(outputs)
    assert refused.refusal.code is RefusalCode.CLOCK and refused.node_key is None
    assert "set it (NTP)" in refused.refusal.text
