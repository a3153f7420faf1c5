"""Body schemas, message types, the registry, and the local errors of encoding."""

from __future__ import annotations

import math

import pytest

from rms.identity import NodeIdentity
from rms.wire import (
    Accepted,
    Bool,
    Bytes,
    Decoder,
    EncodeError,
    Int,
    List,
    Map,
    MessageType,
    Registry,
    SchemaViolation,
    Str,
    WireError,
    default_registry,
    encode,
)
from rms.wire.messages.node import PING, PONG, Ping, Pong
from rms.wire.schema import MAX_DEPTH, within_depth

ALICE = NodeIdentity.from_seed(b"A" * 32)
NOW = 1_700_000_000.0

ITEM = Map({"k": Int(0, 9)}, optional={"v": Str(max_len=8)})
RICH = Map(
    required={"n": Int(-5, 5), "flag": Bool(), "items": List(ITEM, max_items=3)},
    optional={"blob": Bytes(max_len=4, min_len=1)},
)


def violation(schema: Map, value: object, strict: bool = False) -> str:
    with pytest.raises(SchemaViolation) as caught:
        schema.conform(value, 2, strict)
    return str(caught.value)


def test_a_conforming_body_passes() -> None:
    body = {"n": -5, "flag": True, "items": [{"k": 1}, {"k": 9, "v": "héllo"}], "blob": b"ab"}
    out = RICH.conform_map(body, 2, True)
    assert out == {**body, "items": ({"k": 1}, {"k": 9, "v": "héllo"})}


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"n": 6, "flag": True, "items": []}, "body.n: integer out of range [-5, 5]"),
        ({"n": True, "flag": True, "items": []}, "body.n: expected an integer, got bool"),
        ({"n": 0, "flag": 1, "items": []}, "body.flag: expected a bool, got int"),
        ({"n": 0, "flag": True}, "body: missing field 'items'"),
        ({"n": 0, "flag": True, "items": [{}] * 4}, "body.items: 4 items, allowed 3"),
        ({"n": 0, "flag": True, "items": [{"k": 1}, {"k": 10}]}, "body.items[1].k: integer"),
        ({"n": 0, "flag": True, "items": [{"k": 1, "v": "x" * 9}]}, "body.items[0].v: 9 char"),
        ({"n": 0, "flag": True, "items": [{"k": 1, "v": b"x"}]}, "body.items[0].v: expected a str"),
        ({"n": 0, "flag": True, "items": [], "blob": b""}, "body.blob: 0 bytes, allowed 1..4"),
        ({"n": 0, "flag": True, "items": [], "blob": "ab"}, "body.blob: expected bytes"),
        ({"n": 0, "flag": True, "items": {}}, "body.items: expected a list, got dict"),
        ([("n", 0)], "body: expected a map, got list"),
    ],
)
def test_violations_say_where(value: object, where: str) -> None:
    assert violation(RICH, value).startswith(where)


def test_unknown_fields_strict_and_lenient() -> None:
    body = {"n": 0, "flag": False, "items": [{"k": 0, "new": [1, 2]}], "extra": {"a": None}}
    assert RICH.conform_map(body, 2, False) == {"n": 0, "flag": False, "items": ({"k": 0},)}
    assert "body.items[0]: unknown field 'new'" in violation(RICH, body, strict=True)
    assert "body: unknown field 'extra'" in violation(RICH, {**body, "items": []}, strict=True)
    assert "unknown field" in violation(RICH, {b"n": 0, "flag": False, "items": []})


def test_within_depth() -> None:
    assert within_depth(0, 0)
    assert not within_depth([], 0)
    assert within_depth([[[]]], 3)
    assert not within_depth([[[]]], 2)
    assert not within_depth({"a": {"b": [1]}}, 2)
    assert within_depth({"a": {"b": [1]}}, 3)
    assert not within_depth({("k",): 1}, 1)  # keys count too


def test_schema_definitions_are_checked() -> None:
    with pytest.raises(ValueError, match="empty"):
        Int(5, 4)
    with pytest.raises(ValueError, match="msgpack"):
        Int(0, 2**64)
    with pytest.raises(ValueError, match="bounds"):
        Bytes(max_len=3, min_len=4)
    with pytest.raises(ValueError, match="bounds"):
        List(Int(), max_items=-1)
    with pytest.raises(ValueError, match="both required and optional"):
        Map({"a": Int()}, optional={"a": Int()})


def test_message_type_names_and_depth() -> None:
    for bad in ["ping", "Node.ping", "node..ping", "node.ping.", "1node.ping", "a." + "b" * 63]:
        with pytest.raises(ValueError, match="dotted"):
            MessageType(bad, Map({}))
    schema: Map = Map({})
    for _ in range(MAX_DEPTH - 2):  # the envelope array takes one level
        schema = Map({"x": schema})
    MessageType("test.deepest", schema)
    with pytest.raises(ValueError, match="deeper"):
        MessageType("test.deeper", Map({"x": schema}))


def test_registry() -> None:
    registry = default_registry()
    assert registry.get("node.ping") is PING
    assert registry.get("node.nope") is None
    assert "node.pong" in registry
    assert {PING, PONG} <= set(registry)
    extra = MessageType("test.extra", Map({}))
    bigger = registry.extended([extra])
    assert len(bigger) == len(registry) + 1
    assert "test.extra" not in registry
    with pytest.raises(ValueError, match="twice"):
        Registry([PING, PING])


def test_encode_refuses_bodies_that_break_the_schema() -> None:
    bodies: list[dict[str, object]] = [
        {},
        {"request_id": b"x" * 17},
        {"request_id": "x"},
        {"request_id": b"", "x": 1},
    ]
    for body in bodies:
        with pytest.raises(EncodeError, match=r"node\.ping: body"):
            encode(ALICE, PING, body, NOW)


def test_encode_refuses_bad_arguments() -> None:
    body = Ping(b"r").body()
    with pytest.raises(EncodeError, match="nonce"):
        encode(ALICE, PING, body, NOW, nonce=b"short")
    with pytest.raises(EncodeError, match="finite"):
        encode(ALICE, PING, body, math.nan)
    with pytest.raises(EncodeError, match="exceeds 100"):
        encode(ALICE, PING, body, NOW, max_datagram=100)
    text = MessageType("test.text", Map({"s": Str(max_len=10)}))
    with pytest.raises(EncodeError, match="cannot pack"):
        encode(ALICE, text, {"s": "\ud800"}, NOW)


def test_encode_uses_fresh_nonces() -> None:
    body = Ping(b"r").body()
    assert encode(ALICE, PING, body, NOW) != encode(ALICE, PING, body, NOW)
    fixed = bytes(16)
    assert encode(ALICE, PING, body, NOW, nonce=fixed) == encode(
        ALICE, PING, body, NOW, nonce=fixed
    )


def test_typed_views_check_the_type() -> None:
    result = Decoder().decode(encode(ALICE, PONG, Pong(b"r").body(), NOW), NOW)
    assert isinstance(result, Accepted)
    with pytest.raises(WireError, match=r"expected a node\.ping"):
        Ping.from_envelope(result.envelope)
