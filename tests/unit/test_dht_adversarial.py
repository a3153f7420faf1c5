"""Attacks on a DHT node: none succeeds, none crashes or stalls it (issue 4, acceptance)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rms.dht.puzzle import satisfies
from rms.dht.records import PEER, peer_fields
from rms.dht.types import Send
from rms.identity import NodeIdentity
from rms.wire import encode
from rms.wire.messages import dht as msgs
from tests.unit.dht_support import NOW, VPN, Net, identity, make_node


def _find_node(sender_index: int, host: str, pad: int = 0) -> bytes:
    body: dict[str, object] = {
        "rid": bytes(16),
        "from": [{"v": VPN, "h": host, "p": 7947}],
        "target": bytes(32),
    }
    if pad:
        body["pad"] = bytes(pad)
    return encode(identity(sender_index), msgs.FIND_NODE, body, NOW)


def _filled() -> tuple:  # type: ignore[type-arg]
    nodes = [make_node(i) for i in range(25)]
    net = Net(nodes)
    for node in nodes[1:]:
        net.run(node, node.bootstrap([(nodes[0].key, nodes[0].config.addresses)], net.now))
    return nodes, net


def test_an_answer_from_another_key_than_the_one_asked_is_dropped() -> None:
    a, b = make_node(1), make_node(2)
    out = a.bootstrap([(b.key, b.config.addresses)], NOW)
    request = out[0]
    assert isinstance(request, Send)
    rid = next(iter(a.pending))
    forged = encode(identity(3), msgs.NODES, {"rid": rid, "contacts": []}, NOW)
    assert a.datagram_received(forged, request.addr, NOW) == []
    assert a.counters["unexpected_answer"] == 1 and rid in a.pending
    assert len(a.table) == 0


def test_an_answer_from_the_right_key_at_another_address_is_dropped() -> None:
    a, b = make_node(1), make_node(2)
    a.bootstrap([(b.key, b.config.addresses)], NOW)
    rid = next(iter(a.pending))
    answer = encode(b.identity, msgs.NODES, {"rid": rid, "contacts": []}, NOW)
    assert a.datagram_received(answer, ("10.0.99.1", 7947), NOW) == []
    assert len(a.table) == 0 and rid in a.pending


def test_a_key_without_the_puzzle_solved_is_refused() -> None:
    seed = next(
        bytes([i]) * 32
        for i in range(256)
        if not satisfies(NodeIdentity.from_seed(bytes([i]) * 32).public_key, 4)
    )
    weak = NodeIdentity.from_seed(seed)
    body = {"rid": bytes(16), "from": [], "target": bytes(32)}
    node = make_node(1)
    assert node.datagram_received(encode(weak, msgs.FIND_NODE, body, NOW), ("h", 1), NOW) == []
    assert node.counters["puzzle"] == 1


def test_replies_to_unproven_addresses_are_at_most_three_times_the_request() -> None:
    nodes, _ = _filled()
    target = nodes[0]
    for pad in (0, 200, 1000):
        probe = _find_node(77, "198.51.100.7", pad)
        out = target.datagram_received(probe, ("198.51.100.7", 7947), NOW)
        replies = [o for o in out if isinstance(o, Send) and o.addr == ("198.51.100.7", 7947)]
        sizes = [len(o.data) for o in replies]
        assert all(size <= 3 * len(probe) for size in sizes)
        assert all(size <= 1280 for size in sizes)


def test_a_flood_is_rate_limited_and_leaves_the_node_responsive_and_bounded() -> None:
    nodes, _ = _filled()
    target = nodes[0]
    answered = 0
    for i in range(3000):
        probe = encode(
            identity(5), msgs.PING, {"rid": i.to_bytes(16, "big"), "from": []}, NOW + i * 1e-4
        )
        answered += len(target.datagram_received(probe, ("203.0.113.9", 4000), NOW + i * 1e-4))
    assert answered <= 200 and target.counters["rate_limited"] > 2500
    assert len(target.pending) <= target.config.max_pending
    ping = encode(identity(6), msgs.PING, {"rid": bytes(16), "from": []}, NOW + 1)
    assert target.datagram_received(ping, ("192.0.2.1", 4000), NOW + 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1400))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    node = make_node(1)
    assert node.datagram_received(data, ("10.0.0.1", 1), NOW) == []
    node.handle_timer(NOW + 5)


def test_forged_records_are_refused_by_the_store() -> None:
    nodes, net = _filled()
    victim = nodes[4]
    _op, out = victim.publish(PEER, peer_fields(victim.config.addresses), NOW)
    net.run(victim, out)
    raw = next(iter(victim.own.values())).raw
    forged = raw[:10] + bytes([raw[10] ^ 1]) + raw[11:]
    holder = nodes[1]
    store = {"rid": bytes(16), "from": [], "record": forged}
    out = holder.datagram_received(encode(identity(9), msgs.STORE, store, NOW), ("h", 1), NOW)
    stored = [o for o in out if isinstance(o, Send)]
    assert stored and holder.counters["bad_record"] == 1
