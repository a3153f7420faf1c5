"""The gossip.* family and the answer box: round trips, bad fields, what is confidential."""

from __future__ import annotations

import random
from ipaddress import IPv6Address

import msgpack
import pytest
from nacl.public import Box

from rms.gossip import Answer, AnswerRejected, Gossip, RequestBody, make_answer, make_request
from rms.gossip.requests import open_answer, request_from_envelope
from rms.identity import NodeIdentity, peer_box_public_key
from rms.wire import Accepted, Decoder, Rejected, RejectReason, WireError, encode, sign_payload
from rms.wire.messages.gossip import ANSWER, REQUEST

NOW = 1_700_000_000.0
ALICE = NodeIdentity.from_seed(b"a" * 32)
BOB = NodeIdentity.from_seed(b"b" * 32)
EVE = NodeIdentity.from_seed(b"e" * 32)
BODY = RequestBody(
    b"\x07" * 16,
    "storage",
    2**40,
    8,
    exclude_locations=(b"L" * 16,),
    exclude_networks=(b"N" * 16, b"M" * 16),
    reply_addresses=(IPv6Address("fd00::1"),),
)
OFFER = {"amount": 2**40, "addresses": [IPv6Address("fd00::2").packed]}


def hand_signed(body: dict[str, object]) -> bytes:
    """A request the strict encoder would refuse, as a peer could still send it."""
    header = (1, REQUEST.name, ALICE.public_key, int(NOW * 1000), b"n" * 16)
    return sign_payload(ALICE, msgpack.packb((*header, body)))


def test_request_round_trip_through_the_default_decoder() -> None:
    request = make_request(ALICE, BODY, NOW)
    result = Decoder().decode(request.data, NOW)
    assert isinstance(result, Accepted)
    again = request_from_envelope(result.envelope, request.data, request.digest)
    assert again == request
    assert again.origin_ms == int(NOW * 1000)
    assert again.requester == ALICE.public_key


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request_id", b"short"),
        ("amount", 0),
        ("hop_limit", 0),
        ("hop_limit", 256),
        ("exclude_locations", [b"x" * 15]),
        ("reply_addresses", [b"\x00" * 16] * 5),
        ("kind", ""),
    ],
)
def test_bad_request_fields_are_bad_body(field: str, value: object) -> None:
    body = {**BODY.body(), field: value}
    with pytest.raises(WireError):
        encode(ALICE, REQUEST, body, NOW)
    result = Decoder().decode(hand_signed(body), NOW)
    assert isinstance(result, Rejected)
    assert result.reason == RejectReason.BAD_BODY


def test_unknown_kind_is_refused_on_both_sides() -> None:
    with pytest.raises(WireError):
        make_request(ALICE, RequestBody(b"\x01" * 16, "gpu", 1, 1), NOW)
    data = encode(ALICE, REQUEST, {**BODY.body(), "kind": "gpu"}, NOW)
    result = Decoder().decode(data, NOW)
    assert isinstance(result, Accepted)
    assert request_from_envelope(result.envelope, data, b"") is None


def test_answer_opens_only_for_the_requester() -> None:
    request = make_request(ALICE, BODY, NOW)
    data = make_answer(request, OFFER, BOB, NOW)
    assert OFFER["addresses"][0] not in data  # type: ignore[index]
    answer = open_answer(data, ALICE, NOW)
    assert isinstance(answer, Answer)
    assert answer.answerer == BOB.public_key
    assert answer.request_id == BODY.request_id
    assert answer.offer == {"amount": 2**40, "addresses": (IPv6Address("fd00::2").packed,)}
    assert open_answer(data, EVE, NOW) == AnswerRejected("bad_box")


def test_answer_rejections_are_values() -> None:
    request = make_request(ALICE, BODY, NOW)
    data = make_answer(request, OFFER, BOB, NOW)
    assert open_answer(data[:-1] + bytes([data[-1] ^ 1]), ALICE, NOW) == AnswerRejected(
        "bad_signature"
    )
    assert open_answer(b"junk", ALICE, NOW) == AnswerRejected("truncated")
    assert open_answer(request.data, ALICE, NOW) == AnswerRejected("not_an_answer")
    assert open_answer(data, ALICE, NOW + 3600) == AnswerRejected("stale")


def test_an_answer_boxing_junk_is_bad_offer() -> None:
    box = Box(BOB.box_private_key(), peer_box_public_key(ALICE.public_key))
    sealed = bytes(box.encrypt(b"\xc1 not msgpack"))
    data = encode(BOB, ANSWER, {"request_id": b"\x07" * 16, "box": sealed}, NOW)
    assert open_answer(data, ALICE, NOW) == AnswerRejected("bad_offer")


def test_core_new_request_ids_are_seeded() -> None:
    one = Gossip(ALICE, random.Random(3)).new_request_id()
    two = Gossip(ALICE, random.Random(3)).new_request_id()
    assert one == two
    assert len(one) == 16
