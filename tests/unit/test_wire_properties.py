"""Property tests: round trips, junk never raises, no mutation of a signed datagram passes."""

from __future__ import annotations

import random
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rms.identity import NodeIdentity
from rms.wire import (
    SIGNATURE_SIZE,
    Accepted,
    Bool,
    Bytes,
    Decoder,
    DecoderConfig,
    Field,
    Int,
    List,
    Map,
    MessageType,
    Registry,
    Rejected,
    RejectReason,
    Str,
    default_registry,
    encode,
    sign_payload,
)
from rms.wire.messages.node import PING, Ping

ALICE = NodeIdentity.from_seed(b"A" * 32)
NOW = 1_700_000_000.0
NOW_MS = 1_700_000_000_000

RICH = MessageType(
    "test.rich",
    Map(
        required={
            "n": Int(-5, 1000),
            "blob": Bytes(max_len=64),
            "name": Str(max_len=20),
            "flag": Bool(),
            "items": List(Map({"k": Int(0, 9)}, optional={"v": Str(max_len=8)}), max_items=5),
        },
        optional={
            "inner": Map({"grid": List(List(Int(), max_items=3), max_items=3)}),
            "big": Int(),
        },
    ),
)
REGISTRY = default_registry().extended([RICH])
NAMES = [t.name for t in REGISTRY]
FIELD_NAMES = ["request_id", "n", "blob", "items", "x"]


def values(spec: Field) -> st.SearchStrategy[Any]:
    """Every value that conforms to `spec` (lists as tuples, as the decoder returns them)."""
    if isinstance(spec, Int):
        return st.integers(spec.min, spec.max)
    if isinstance(spec, Bytes):
        return st.binary(min_size=spec.min_len, max_size=spec.max_len)
    if isinstance(spec, Str):
        return st.text(min_size=spec.min_len, max_size=spec.max_len)
    if isinstance(spec, Bool):
        return st.booleans()
    if isinstance(spec, List):
        return st.lists(values(spec.item), max_size=spec.max_items).map(tuple)
    assert isinstance(spec, Map)
    return st.fixed_dictionaries(
        {k: values(v) for k, v in spec.required.items()},
        optional={k: values(v) for k, v in spec.optional.items()},
    )


# Anything msgpack can carry, to throw at the decoder in an otherwise valid envelope.
MSGPACK_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(body=values(RICH.body), nonce=st.binary(min_size=16, max_size=16))
def test_round_trip(body: dict[str, object], nonce: bytes) -> None:
    datagram = encode(ALICE, RICH, body, NOW, nonce=nonce)
    result = Decoder(REGISTRY).decode(datagram, NOW)
    assert isinstance(result, Accepted), result
    assert result.envelope.body == body
    assert (result.envelope.nonce, result.envelope.msg_type) == (nonce, RICH)


@settings(max_examples=500)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    for datagram in (data, bytes(SIGNATURE_SIZE) + data):
        assert isinstance(Decoder(REGISTRY).decode(datagram, NOW), Rejected)


@settings(max_examples=300)
@given(junk=MSGPACK_VALUES)
def test_arbitrary_msgpack_never_raises(junk: object) -> None:
    payload = msgpack.packb(junk)
    assert isinstance(Decoder(REGISTRY).decode(sign_payload(ALICE, payload), NOW), Rejected)


@settings(max_examples=300)
@given(
    version=st.sampled_from([1, 1, 1, 0, 2]),
    name=st.sampled_from(NAMES) | st.text(max_size=12),
    skew_ms=st.integers(-200_000, 200_000),
    nonce=st.binary(min_size=15, max_size=17),
    body=MSGPACK_VALUES
    | st.dictionaries(st.sampled_from(["request_id", "n", "x"]), MSGPACK_VALUES),
)
def test_signed_envelopes_with_junk_fields_never_raise(
    version: int, name: str, skew_ms: int, nonce: bytes, body: object
) -> None:
    fields = (version, name, ALICE.public_key, NOW_MS + skew_ms, nonce, body)
    datagram = sign_payload(ALICE, msgpack.packb(fields))
    decoder = Decoder(REGISTRY)
    first = decoder.decode(datagram, NOW)
    assert isinstance(first, Accepted | Rejected)
    again = decoder.decode(datagram, NOW)
    assert isinstance(again, Rejected)
    if isinstance(first, Accepted):
        assert again.reason is RejectReason.REPLAYED


VALID = encode(ALICE, PING, Ping(b"request-0001").body(), NOW, nonce=bytes(range(16)))


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(0, len(VALID) - 1), value=st.integers(0, 255))
def test_single_byte_mutations_are_never_accepted(position: int, value: int) -> None:
    mutated = bytearray(VALID)
    mutated[position] = value
    result = Decoder().decode(bytes(mutated), NOW)
    assert isinstance(result, Accepted) == (bytes(mutated) == VALID)


@given(position=st.integers(0, len(VALID)), value=st.integers(0, 255))
def test_inserted_or_deleted_bytes_are_never_accepted(position: int, value: int) -> None:
    inserted = VALID[:position] + bytes([value]) + VALID[position:]
    deleted = VALID[: min(position, len(VALID) - 1)] + VALID[position + 1 :]
    for datagram in (inserted, deleted):
        assert isinstance(Decoder().decode(datagram, NOW), Rejected)


def test_every_single_bit_flip_is_rejected() -> None:
    for position in range(len(VALID)):
        for bit in range(8):
            mutated = bytearray(VALID)
            mutated[position] ^= 1 << bit
            assert isinstance(Decoder().decode(bytes(mutated), NOW), Rejected)


@settings(max_examples=50)
@given(capacity=st.integers(1, 20), count=st.integers(1, 60), seed=st.integers(0, 2**32))
def test_no_replay_is_ever_accepted_through_a_full_cache(
    capacity: int, count: int, seed: int
) -> None:
    decoder = Decoder(Registry([PING]), DecoderConfig(replay_capacity=capacity))
    rng = random.Random(seed)
    sent = []
    for i in range(count):
        when = NOW - rng.uniform(0, 100)
        datagram = encode(ALICE, PING, {"request_id": b""}, when, nonce=i.to_bytes(16, "big"))
        sent.append(datagram)
        decoder.decode(datagram, NOW)
        assert len(decoder.replay) <= capacity
    for datagram in sent:
        assert isinstance(decoder.decode(datagram, NOW), Rejected)
