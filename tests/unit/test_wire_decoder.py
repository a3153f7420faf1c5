"""Every way a datagram can be wrong is rejected with its reason, and nothing raises."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest

from rms.identity import NodeIdentity
from rms.wire import (
    SIGNATURE_SIZE,
    Accepted,
    Bytes,
    Decoder,
    DecoderConfig,
    List,
    Map,
    MessageType,
    Rejected,
    RejectReason,
    WireError,
    encode,
    sign_payload,
)
from rms.wire.messages.node import PING, PONG, Ping, Pong

ALICE = NodeIdentity.from_seed(b"A" * 32)
MALLORY = NodeIdentity.from_seed(b"M" * 32)
NOW = 1_700_000_000.0
NOW_MS = 1_700_000_000_000
NONCE = bytes(range(16))
RID = b"request-0001"

BULK = MessageType("test.bulk", Map({"blobs": List(Bytes(max_len=65536), max_items=10000)}))


def ping(now: float = NOW, nonce: bytes = NONCE, who: NodeIdentity = ALICE) -> bytes:
    return encode(who, PING, Ping(RID).body(), now, nonce=nonce)


def payload_of(datagram: bytes) -> list[Any]:
    fields: list[Any] = msgpack.unpackb(datagram[SIGNATURE_SIZE:], use_list=True)
    return fields


def signed(fields: object, who: NodeIdentity = ALICE) -> bytes:
    return sign_payload(who, msgpack.packb(fields))


def header(**changes: object) -> list[object]:
    fields: list[object] = [1, "node.ping", ALICE.public_key, NOW_MS, NONCE, {"request_id": RID}]
    names = ["version", "type", "sender", "ts", "nonce", "body"]
    for name, value in changes.items():
        fields[names.index(name)] = value
    return fields


def rejected(data: bytes, reason: RejectReason, decoder: Decoder | None = None) -> Rejected:
    result = (decoder or Decoder()).decode(data, NOW)
    assert isinstance(result, Rejected), result
    assert result.reason is reason, result
    assert 0 < len(result.detail) <= 120
    return result


def test_a_valid_ping_is_accepted() -> None:
    result = Decoder().decode(ping(), NOW + 1)
    assert isinstance(result, Accepted)
    env = result.envelope
    assert (env.version, env.msg_type, env.timestamp_ms, env.nonce) == (1, PING, NOW_MS, NONCE)
    assert env.sender == ALICE.public_key
    assert env.sender_id == ALICE.node_id
    assert env.body == {"request_id": RID}
    assert Ping.from_envelope(env) == Ping(RID)


def test_pong_echoes_the_request_id() -> None:
    pong = encode(ALICE, PONG, Ping(RID).answer().body(), NOW, nonce=NONCE)
    result = Decoder().decode(pong, NOW)
    assert isinstance(result, Accepted)
    assert Pong.from_envelope(result.envelope) == Pong(RID)


def test_every_truncation_is_truncated() -> None:
    datagram = ping()
    for cut in range(len(datagram)):
        rejected(datagram[:cut], RejectReason.TRUNCATED)


def test_oversized_datagram() -> None:
    rejected(ping() + bytes(70_000), RejectReason.OVERSIZED)
    small = Decoder(config=DecoderConfig(max_datagram=100))
    rejected(ping(), RejectReason.OVERSIZED, small)


def test_msgpack_caps_are_oversized() -> None:
    registry = Decoder().registry.extended([BULK])
    config = DecoderConfig(max_bin_len=100, max_array_len=50)
    decoder = Decoder(registry, config)
    too_long = encode(ALICE, BULK, {"blobs": [bytes(101)]}, NOW, nonce=NONCE)
    rejected(too_long, RejectReason.OVERSIZED, decoder)
    too_many = encode(ALICE, BULK, {"blobs": [b""] * 51}, NOW, nonce=NONCE)
    rejected(too_many, RejectReason.OVERSIZED, decoder)
    huge_map = signed(header(body={f"k{i}": 0 for i in range(300)}))
    rejected(huge_map, RejectReason.OVERSIZED)


def test_huge_declared_lengths_are_refused_before_allocation() -> None:
    # An array header claiming 2**32 - 1 items in a tiny datagram.
    rejected(bytes(SIGNATURE_SIZE) + b"\xdd\xff\xff\xff\xff", RejectReason.OVERSIZED)
    rejected(bytes(SIGNATURE_SIZE) + b"\xc6\xff\xff\xff\xff", RejectReason.TRUNCATED)


def test_deep_nesting() -> None:
    bomb = bytes(SIGNATURE_SIZE) + b"\x91" * 5000 + b"\x00"
    rejected(bomb, RejectReason.OVERSIZED)
    nested: object = 0
    for _ in range(20):
        nested = [nested]
    deep_unknown = signed(header(body={"request_id": RID, "later": nested}))
    assert "deeper" in rejected(deep_unknown, RejectReason.BAD_BODY).detail


def test_malformed_envelopes() -> None:
    for fields in [
        {"not": "an array"},
        [],
        ["1", "node.ping"],
        header()[:5],
        [*header(), "extra"],
        header(type=b"node.ping"),
        header(sender=ALICE.public_key[:31]),
        header(sender="key"),
        header(ts=float(NOW_MS)),
        header(ts=True),
        header(nonce=NONCE[:15]),
        header(nonce=None),
    ]:
        rejected(signed(fields), RejectReason.MALFORMED)


def test_malformed_bytes() -> None:
    rejected(ping() + b"\x00", RejectReason.MALFORMED)  # trailing bytes
    rejected(bytes(SIGNATURE_SIZE) + b"\xc1", RejectReason.MALFORMED)  # never-used byte
    rejected(bytes(SIGNATURE_SIZE) + b"\x91\xa2\xff\xfe", RejectReason.MALFORMED)  # not UTF-8
    rejected(bytes(SIGNATURE_SIZE) + b"\x81\x01\x02", RejectReason.MALFORMED)  # int map key
    rejected(bytes(SIGNATURE_SIZE) + b"\xd4\x01\x00", RejectReason.MALFORMED)  # ext type
    timestamp_ext = msgpack.packb(msgpack.Timestamp(1, 0))
    rejected(bytes(SIGNATURE_SIZE) + timestamp_ext, RejectReason.MALFORMED)


def test_flipped_signature_is_bad_signature() -> None:
    datagram = bytearray(ping())
    datagram[10] ^= 0x01
    rejected(bytes(datagram), RejectReason.BAD_SIGNATURE)


def test_body_altered_after_signing_is_bad_signature() -> None:
    datagram = ping()
    fields = payload_of(datagram)
    fields[5] = {"request_id": b"request-0002"}
    forged = datagram[:SIGNATURE_SIZE] + msgpack.packb(fields)
    rejected(forged, RejectReason.BAD_SIGNATURE)


def test_swapped_sender_key_is_bad_signature() -> None:
    datagram = ping()
    fields = payload_of(datagram)
    fields[2] = MALLORY.public_key
    rejected(datagram[:SIGNATURE_SIZE] + msgpack.packb(fields), RejectReason.BAD_SIGNATURE)
    # Signed by Mallory, claiming to be Alice.
    rejected(signed(header(), MALLORY), RejectReason.BAD_SIGNATURE)


def test_signature_without_the_context_is_bad_signature() -> None:
    payload = msgpack.packb(header())
    rejected(ALICE.sign(payload) + payload, RejectReason.BAD_SIGNATURE)


def test_replayed() -> None:
    decoder = Decoder()
    assert isinstance(decoder.decode(ping(), NOW), Accepted)
    rejected(ping(), RejectReason.REPLAYED, decoder)
    rejected(ping(now=NOW + 1), RejectReason.REPLAYED, decoder)  # same nonce, new time
    assert isinstance(decoder.decode(ping(who=MALLORY), NOW), Accepted)  # keyed per sender


def test_a_rejected_forgery_does_not_burn_the_nonce() -> None:
    decoder = Decoder()
    rejected(signed(header(), MALLORY), RejectReason.BAD_SIGNATURE, decoder)
    assert isinstance(decoder.decode(ping(), NOW), Accepted)


def test_timestamp_window_edges() -> None:
    assert isinstance(Decoder().decode(ping(now=NOW - 120), NOW), Accepted)
    assert isinstance(Decoder().decode(ping(now=NOW + 30), NOW), Accepted)
    assert "s ago" in rejected(ping(now=NOW - 120.001), RejectReason.STALE).detail
    assert "ahead" in rejected(ping(now=NOW + 30.001), RejectReason.FUTURE).detail
    rejected(ping(now=0), RejectReason.STALE)
    rejected(signed(header(ts=2**64 - 1)), RejectReason.FUTURE)
    rejected(signed(header(ts=-(2**63))), RejectReason.STALE)


def test_custom_window() -> None:
    decoder = Decoder(config=DecoderConfig(max_past_s=5, max_future_s=0))
    rejected(ping(now=NOW - 6), RejectReason.STALE, decoder)
    rejected(ping(now=NOW + 0.002), RejectReason.FUTURE, decoder)


def test_evicted_entries_are_refused_by_the_floor() -> None:
    decoder = Decoder(config=DecoderConfig(replay_capacity=2))
    sent = [ping(now=NOW - 10 + i, nonce=bytes([i]) * 16) for i in range(3)]
    for datagram in sent:
        assert isinstance(decoder.decode(datagram, NOW), Accepted)
    assert len(decoder.replay) == 2
    assert decoder.replay.floor_ms == NOW_MS - 10_000
    assert "floor" in rejected(sent[0], RejectReason.STALE, decoder).detail
    rejected(sent[1], RejectReason.REPLAYED, decoder)
    rejected(sent[2], RejectReason.REPLAYED, decoder)


def test_unknown_version() -> None:
    rejected(signed(header(version=2)), RejectReason.UNKNOWN_VERSION)
    rejected(signed([2, "a future layout"]), RejectReason.UNKNOWN_VERSION)
    rejected(signed([0]), RejectReason.UNKNOWN_VERSION)
    rejected(signed(header(version="1")), RejectReason.MALFORMED)


def test_unknown_type() -> None:
    detail = rejected(signed(header(type="node.pingx")), RejectReason.UNKNOWN_TYPE).detail
    assert "node.pingx" in detail
    rejected(signed(header(type="x" * 5000)), RejectReason.UNKNOWN_TYPE)
    rejected(signed(header(type="")), RejectReason.UNKNOWN_TYPE)


@pytest.mark.parametrize(
    "body",
    [
        {"request_id": b"x" * 17},
        {"request_id": "text"},
        {"request_id": None},
        {},
        {"other": RID},
        [RID],
        RID,
        {b"request_id": RID},
    ],
)
def test_bad_body(body: object) -> None:
    rejected(signed(header(body=body)), RejectReason.BAD_BODY)


def test_unknown_fields_are_ignored() -> None:
    datagram = signed(header(body={"request_id": RID, "added_later": [1, {"x": 2.5}]}))
    result = Decoder().decode(datagram, NOW)
    assert isinstance(result, Accepted)
    assert result.envelope.body == {"request_id": RID}


def test_a_non_finite_clock_is_a_local_error() -> None:
    with pytest.raises(WireError, match="finite"):
        Decoder().decode(ping(), math.inf)


def test_counts() -> None:
    decoder = Decoder()
    decoder.decode(ping(), NOW)
    decoder.decode(ping(), NOW)
    decoder.decode(b"", NOW)
    assert decoder.accepted == 1
    assert decoder.rejected[RejectReason.REPLAYED] == 1
    assert decoder.rejected[RejectReason.TRUNCATED] == 1
