"""Cross-VPN reach: a record published in one VPN is found from a VPN that shares no member."""

from __future__ import annotations

from rms.dht.records import PEER, parse_record, peer_fields, peer_key
from rms.wire import encode
from rms.wire.messages import dht as msgs
from tests.unit.dht_support import NOW, Net, identity, make_node

A, B, C = bytes([1]) * 16, bytes([2]) * 16, bytes([3]) * 16


def chain() -> tuple[list, Net]:  # type: ignore[type-arg]
    # VPN A: nodes 0-5; VPN B: 6-11; VPN C: 12-17; bridges 18 (A+B) and 19 (B+C).
    nodes = [make_node(i, (A,)) for i in range(6)]
    nodes += [make_node(i, (B,)) for i in range(6, 12)]
    nodes += [make_node(i, (C,)) for i in range(12, 18)]
    nodes += [make_node(18, (A, B)), make_node(19, (B, C))]
    net = Net(nodes)
    for node in nodes:
        peers = [n for n in nodes if n is not node and n.config.vpns & node.config.vpns]
        net.run(node, node.bootstrap([(p.key, p.config.addresses) for p in peers], net.now))
    for node in nodes:  # a second round: everyone has met the bridges by now
        net.run(node, node.start_find_node(node.node_id, net.now)[1])
    return nodes, net


def test_a_record_crosses_two_vpn_boundaries_through_relays() -> None:
    nodes, net = chain()
    publisher = nodes[14]  # in C only
    net.run(publisher, publisher.publish(PEER, peer_fields(publisher.config.addresses), net.now)[1])
    asker = nodes[2]  # in A only: shares no VPN with the publisher
    _op, out = asker.start_get(peer_key(publisher.key), net.now)
    net.done.clear()
    net.run(asker, out)
    result = net.done[-1].result
    assert result.record is not None
    assert parse_record(result.record).publisher == publisher.key
    assert sum(n.forwards.relayed for n in nodes) > 0


def test_a_relay_refuses_an_origin_whose_address_it_has_not_proven() -> None:
    relay = make_node(18, (A, B))
    body = {
        "rid": bytes(16),
        "from": [],
        "origin": identity(3).public_key,
        "path": [{"k": identity(4).public_key, "a": {"v": B, "h": "10.0.7.1", "p": 7947}}],
        "inner": bytes(100),
    }
    datagram = encode(identity(3), msgs.RELAY, body, NOW)
    assert relay.datagram_received(datagram, ("203.0.113.1", 9), NOW) == []
    assert relay.counters["relay_refused"] == 1


def test_a_target_drops_a_box_it_cannot_open() -> None:
    target = make_node(4, (B,))
    body = {"rid": bytes(16), "from": [], "origin": identity(3).public_key, "path": [],
            "inner": bytes(100)}  # fmt: skip
    datagram = encode(identity(18), msgs.RELAY, body, NOW)
    assert target.datagram_received(datagram, ("10.0.18.1", 7947), NOW) == []
    assert target.counters["bad_relayed"] == 1
