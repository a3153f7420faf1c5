"""Attacks on a DHT node: none succeeds, none crashes or stalls it (issue 4, acceptance)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rms.dht.ops import Pending
from rms.dht.puzzle import satisfies
from rms.dht.records import PEER, parse_record, peer_fields
from rms.dht.rpc import new_contact
from rms.dht.store import StoreOutcome
from rms.dht.types import Address, LookupDone, Send
from rms.identity import NodeIdentity
from rms.wire import encode
from rms.wire.messages import dht as msgs
from tests.unit.dht_support import NOW, VPN, Net, identity, make_node
from tests.unit.test_dht_copies import answer, asker, record, stores_to
from tests.unit.test_dht_origins import (
    PREFIX,
    _peer_record,
    _ping,
    _store,
    in_first_bucket,
    node_at,
)


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


# -- forged and many origins (docs/dht.md, "Origins") --------------------------------------


def test_a_forged_from_does_not_change_the_origin_a_store_counts_against() -> None:
    own = node_at(1, PREFIX + "1", per_source=1)
    own.set_origins({PREFIX + "a": "net-a", PREFIX + "b": "net-b"})
    # Sent from net-a's host, claiming to be net-b's: it counts against net-a all the same.
    body = {"rid": bytes(16), "from": [{"v": VPN, "h": PREFIX + "b", "p": 7947}]}
    first = encode(identity(30), msgs.STORE, {**body, "record": _peer_record(30)}, NOW)
    own.datagram_received(first, (PREFIX + "a", 7947), NOW)
    second = encode(identity(31), msgs.STORE, {**body, "record": _peer_record(31)}, NOW)
    own.datagram_received(second, (PREFIX + "a", 7947), NOW)
    assert own.store.count == 1 and own.store.outcomes[StoreOutcome.SOURCE_QUOTA] == 1
    assert _store(32, _peer_record(32), PREFIX + "b", NOW, own)  # net-b's quota is untouched


def test_many_keys_behind_one_address_are_one_origin() -> None:
    own = node_at(1, PREFIX + "1", per_source=4)
    own.set_origins({PREFIX + "a": "net-a"})
    stored = [_store(200 + i, _peer_record(200 + i), PREFIX + "a", NOW, own) for i in range(20)]
    assert sum(stored) == 4
    served = 0
    for i in range(300):  # 300 keys, one address: one request budget
        ping = _ping(identity(200 + i % 20), PREFIX + "a", 5000 + i, NOW)
        before = own.counters["rate_limited"]
        own.datagram_received(ping, (PREFIX + "a", 7947), NOW)
        served += own.counters["rate_limited"] == before
    assert served <= 100 - 20  # the burst, less the stores above


def test_many_contacts_proven_through_one_relay_are_one_origin_per_bucket() -> None:
    own = node_at(1, PREFIX + "1")
    own.set_origins({PREFIX + "a": "net-a"})
    relay = node_at(7, PREFIX + "a")
    relay_contact = new_contact(relay.key, relay.config.addresses)
    own.table.add(relay_contact, NOW, "net:net-a")
    # Keys an attacker made, all "answering" through the same first relay, in one bucket.
    for seed in in_first_bucket(own, 12, start=400):
        fake = new_contact(
            identity(seed).public_key, (Address(bytes([seed % 256]) * 16, "fd77::1", 1),)
        )
        fake.route = (relay_contact,)
        pending = Pending(
            msgs.NODES, fake, relay_contact.addresses[0].sock, relay.key, NOW, None, 0, True
        )
        own._prove(pending, NOW)
    via = [c for c in own.table.buckets[0].contacts.values() if c.route]
    assert len(via) == own.config.per_relay == 8 and {c.origin for c in via} == {"via:net:net-a"}
    # The ones refused are no way into the VPNs they claim: a route needs a table contact.
    assert len(own.reach.relays) >= 8
    assert all(own.table.get(c.node_id) is c for c in own.reach.relays.values())


# -- stale replicas and rollbacks ------------------------------------------------------------


def test_an_older_copy_returned_after_the_newest_neither_wins_nor_survives() -> None:
    node, _op, _ = asker()
    answer(node, 1, record(2000), NOW + 0.05)
    out = answer(node, 2, record(1000), NOW + 0.06)  # a rollback attempt: validly signed, old
    assert not any(isinstance(o, LookupDone) for o in out)
    out += answer(node, 3, record(2000), NOW + 0.07)
    finished = next(o for o in out if isinstance(o, LookupDone))
    assert finished.result.record == record(2000)
    assert stores_to(out, 2, record(2000))  # the stale holder is repaired


def test_a_forged_newer_copy_or_a_copy_of_another_key_is_ignored() -> None:
    node, _op, _ = asker()
    genuine = record(3000)
    forged = genuine[:70] + bytes([genuine[70] ^ 1]) + genuine[71:]  # not its signature
    out = answer(node, 1, forged, NOW + 0.05)
    out += answer(node, 2, record(9000, index=51), NOW + 0.06)  # valid, but another key
    assert node.counters["bad_record"] == 1 and not any(isinstance(o, LookupDone) for o in out)
    out += answer(node, 3, record(1000), NOW + 0.07)
    finished = next(o for o in out if isinstance(o, LookupDone))
    assert finished.result.record == record(1000) and finished.result.copies == 1
    assert finished.result.repaired == 0


def test_a_repaired_replica_refuses_the_old_record_afterwards() -> None:
    holder = make_node(2)
    old, new = parse_record(record(1000)), parse_record(record(2000))
    assert holder.store.put(old, "x", NOW, 86400) is StoreOutcome.STORED
    assert holder.store.put(new, "x", NOW, 86400) is StoreOutcome.STORED  # the repair
    assert holder.store.put(old, "x", NOW, 86400) is StoreOutcome.STALE  # rollback refused
    assert [r.seq for r in holder.store.get(new.key, NOW)] == [2000]
