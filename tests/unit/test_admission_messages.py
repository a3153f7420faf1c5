"""The `admission.*` and `roster.*` families: bodies round-trip, bad fields are BAD_BODY."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import msgpack
import pytest

from rms.wire import (
    Accepted,
    Decoder,
    MessageType,
    Rejected,
    RejectReason,
    default_registry,
    encode,
    sign_payload,
)
from rms.wire.messages import admission, roster
from rms.wire.messages.admission import Ack, Busy, Challenge, Hello, Offer, Refuse
from rms.wire.messages.roster import (
    BodyError,
    Endpoint,
    EndpointUpdate,
    Get,
    Have,
    Heartbeat,
    Leave,
    Put,
    Rotate,
    parse_roster_message,
)
from tests.admission_support import NOW, VPN_ID, node, place

ALICE = node(1)
N16 = bytes(range(16))
EP4 = Endpoint(IPv4Address("198.18.0.9"), 51820)
EP6 = Endpoint(IPv6Address("2001:db8::9"), 51900)

ADMISSION = [
    (admission.CHALLENGE, Challenge(VPN_ID, N16)),
    (admission.HELLO, Hello(N16, place(1), place(2))),
    (admission.HELLO, Hello(N16, place(1), place(2), EP4)),
    (admission.HELLO, Hello(N16, place(1), place(2), EP6)),
    (admission.OFFER, Offer(N16, VPN_ID, b"roster", IPv6Address("fd00::1"), bytes(72))),
    (admission.REFUSE, Refuse(N16, "full", "the VPN is full (8 of 8)")),
    (admission.BUSY, Busy("slot", 1500)),
    (admission.ACK, Ack(N16)),
]
ROSTER = [
    (roster.HAVE, Have(VPN_ID, 7, bytes(32))),
    (roster.GET, Get(VPN_ID)),
    (roster.PUT, Put(VPN_ID, b"x" * 100)),
    (roster.HEARTBEAT, Heartbeat(VPN_ID, 7)),
    (roster.LEAVE, Leave(VPN_ID)),
    (roster.ROTATE, Rotate(VPN_ID, bytes(32))),
    (roster.ENDPOINT_UPDATE, EndpointUpdate(VPN_ID, EP6)),
]


def accepted(msg_type: MessageType, body: dict[str, object]) -> Accepted | Rejected:
    return Decoder().decode(encode(ALICE, msg_type, body, NOW), NOW)


@pytest.mark.parametrize(("msg_type", "message"), ADMISSION + ROSTER)
def test_round_trip(msg_type: MessageType, message: object) -> None:
    result = accepted(msg_type, message.body())  # type: ignore[attr-defined]
    assert isinstance(result, Accepted)
    assert type(message).from_envelope(result.envelope) == message  # type: ignore[attr-defined]


@pytest.mark.parametrize(("msg_type", "message"), ROSTER)
def test_parse_roster_message(msg_type: MessageType, message: object) -> None:
    result = accepted(msg_type, message.body())  # type: ignore[attr-defined]
    assert isinstance(result, Accepted)
    assert parse_roster_message(result.envelope) == message


def test_parse_roster_message_ignores_other_families() -> None:
    result = accepted(admission.ACK, Ack(N16).body())
    assert isinstance(result, Accepted) and parse_roster_message(result.envelope) is None


def test_both_families_are_registered() -> None:
    names = {t.name for t in default_registry()}
    assert {t.name for t in admission.TYPES + roster.TYPES} <= names


@pytest.mark.parametrize(
    ("msg_type", "body"),
    [
        (admission.CHALLENGE, {"vpn_id": VPN_ID.bytes, "nonce": bytes(15)}),
        (admission.HELLO, {"challenge": N16, "location": bytes(16), "network": b"short"}),
        (admission.OFFER, {**Offer(N16, VPN_ID, b"r", IPv6Address("fd00::1"), bytes(71)).body()}),
        (admission.OFFER, {**Offer(N16, VPN_ID, b"", IPv6Address("fd00::1"), bytes(72)).body()}),
        (admission.REFUSE, {"challenge": N16, "code": "x" * 33, "text": "t"}),
        (admission.BUSY, {"reason": "slot", "retry_after_ms": 600_001}),
        (admission.BUSY, {"reason": "slot", "retry_after_ms": -1}),
        (roster.HAVE, {"vpn_id": VPN_ID.bytes, "seq": -1, "digest": bytes(32)}),
        (roster.PUT, {"vpn_id": VPN_ID.bytes, "roster": bytes(roster.MAX_ROSTER_BYTES + 1)}),
        (roster.ROTATE, {"vpn_id": VPN_ID.bytes, "wg_public_key": bytes(31)}),
        (roster.ENDPOINT_UPDATE, {"vpn_id": VPN_ID.bytes, "endpoint": {"ip": bytes(4), "port": 0}}),
    ],
)
def test_bad_fields_are_bad_body(msg_type: MessageType, body: dict[str, object]) -> None:
    payload = msgpack.packb((1, msg_type.name, ALICE.public_key, int(NOW * 1000), N16, body))
    result = Decoder().decode(sign_payload(ALICE, payload), NOW)
    assert isinstance(result, Rejected) and result.reason is RejectReason.BAD_BODY


def test_an_endpoint_neither_v4_nor_v6_is_a_body_error() -> None:
    body: dict[str, object] = {"vpn_id": VPN_ID.bytes, "endpoint": {"ip": bytes(7), "port": 1}}
    result = accepted(roster.ENDPOINT_UPDATE, body)
    assert isinstance(result, Accepted)
    with pytest.raises(BodyError, match="neither IPv4 nor IPv6"):
        EndpointUpdate.from_envelope(result.envelope)
    with pytest.raises(ValueError, match="port"):
        Endpoint(IPv4Address("198.18.0.1"), 0)


def test_long_refusal_text_is_cut_to_fit() -> None:
    body = Refuse(N16, "full", "x" * 500).body()
    assert len(str(body["text"])) == admission.MAX_TEXT
    assert isinstance(accepted(admission.REFUSE, body), Accepted)
