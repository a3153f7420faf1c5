"""The DHT core end to end over a lossless in-memory network: join, put, get, providers."""

from __future__ import annotations

import json

from rms.dht.records import PEER, parse_record, peer_fields, peer_key, provider_fields
from rms.dht.routing import bucket_index, distance
from tests.unit.dht_support import NOW, VPN, joined


def test_join_fills_routing_tables_with_proven_contacts() -> None:
    nodes, _ = joined(30)
    assert all(len(n.table) >= 5 for n in nodes)
    for node in nodes:
        for contact in node.table.all_contacts():
            assert bucket_index(node.node_id, contact.node_id) < 256


def test_put_then_get_finds_the_record_from_any_node() -> None:
    nodes, net = joined(30)
    publisher = nodes[3]
    op, out = publisher.publish(PEER, peer_fields(publisher.config.addresses), net.now)
    net.run(publisher, out)
    assert net.done[-1].op_id == op and net.done[-1].result.stored >= 10
    for asker in (nodes[0], nodes[17], nodes[29]):
        op, out = asker.start_get(peer_key(publisher.key), net.now)
        net.run(asker, out)
        result = net.done[-1].result
        assert result.ok and result.record is not None
        assert parse_record(result.record).publisher == publisher.key


def test_find_providers_collects_every_provider() -> None:
    nodes, net = joined(25)
    for node in nodes[:3]:
        fields = provider_fields("storage", 10**12, [bytes(16)], node.config.addresses)
        net.run(node, node.publish("provider", fields, net.now)[1])
    _op, out = nodes[20].start_find_providers("storage", net.now)
    net.run(nodes[20], out)
    records = [parse_record(r) for r in net.done[-1].result.records]
    assert {r.publisher for r in records} == {n.key for n in nodes[:3]}


def test_lookup_converges_to_the_closest_nodes() -> None:
    nodes, net = joined(40)
    target = bytes(range(32))
    _op, out = nodes[5].start_find_node(target, net.now)
    net.run(nodes[5], out)
    found = list(net.done[-1].result.closest)
    truth = sorted(
        (n for n in nodes if n is not nodes[5]), key=lambda n: distance(n.node_id, target)
    )
    assert found[:5] == [n.key for n in truth[:5]]


def test_status_is_json_and_estimates_the_size() -> None:
    nodes, _ = joined(40)
    status = nodes[0].status()
    json.dumps(status)
    assert status["routing_table"] == len(nodes[0].table)
    estimate = status["estimated_nodes"]
    assert isinstance(estimate, int) and 10 <= estimate <= 400


def test_timeouts_evict_after_repeated_failures_and_lookups_end_by_the_deadline() -> None:
    nodes, _net = joined(10)
    asker = nodes[0]
    gone = {n.key for n in nodes[1:]}
    op, out = asker.start_get(peer_key(nodes[4].key), NOW)  # sent, never delivered
    now = NOW
    for _ in range(40):
        now += 1.0
        out = asker.handle_timer(now)
        if any(getattr(o, "op_id", None) == op for o in out):
            break
    assert any(getattr(o, "op_id", None) == op for o in out)
    assert asker.next_timer() is not None
    assert all(c.key in gone for c in asker.table.all_contacts())
    assert VPN in asker.config.vpns
