"""Value lookups collect the copies in flight, return the newest and repair stale replicas.

The asker is driven by hand: its requests go nowhere, and each holder's signed answer is fed
at a chosen time, so the order and timing of copies is exact.
"""

from __future__ import annotations

from rms.dht.node import DhtNode
from rms.dht.records import (
    PEER,
    PROVIDER,
    parse_record,
    peer_fields,
    peer_key,
    provider_fields,
    provider_key,
    sign_record,
)
from rms.dht.types import Contact, LookupDone, Output, Send
from rms.wire import encode
from rms.wire.messages import dht as msgs
from tests.unit.dht_support import NOW, VPN, identity, make_node

PUBLISHER = 50
HOLDERS = (1, 2, 3)


def record(seq: int, index: int = PUBLISHER) -> bytes:
    """A peer record of node `index` with this seq."""
    fields = peer_fields(make_node(index).config.addresses)
    return sign_record(identity(index), PEER, seq, NOW + 3600, fields)


KEY = peer_key(identity(PUBLISHER).public_key)


def asker(**tweaks: object) -> tuple[DhtNode, int, list[Output]]:
    """Node 0 knowing only the holders, one get of KEY started at NOW (one path: all three)."""
    node = make_node(0, (VPN,), paths=1, **tweaks)
    for index in HOLDERS:
        holder = make_node(index)
        node.table.add(Contact(holder.key, holder.node_id, holder.config.addresses), NOW)
    op_id, out = node.start_get(KEY, NOW)
    assert len([o for o in out if isinstance(o, Send)]) == len(HOLDERS)
    return node, op_id, out


def answer(node: DhtNode, index: int, raw: bytes | None, now: float) -> list[Output]:
    """Holder `index`'s signed answer to the node's pending request to it."""
    key = identity(index).public_key
    rid, pending = next((r, p) for r, p in node.pending.items() if p.contact.key == key)
    body: dict[str, object] = {"rid": rid, "contacts": []}
    if raw is not None:
        body["record"] = raw
    data = encode(identity(index), msgs.VALUE, body, now)
    return node.datagram_received(data, pending.addr, now)


def done(out: list[Output]) -> LookupDone | None:
    return next((o for o in out if isinstance(o, LookupDone)), None)


def stores_to(out: list[Output], index: int, raw: bytes) -> bool:
    addr = make_node(index).config.addresses[0].sock
    return any(isinstance(o, Send) and o.addr == addr and raw in o.data for o in out)


def test_a_stale_first_copy_loses_to_a_newer_one_in_flight_and_is_repaired() -> None:
    node, op_id, _ = asker()
    old, new = record(1000), record(2000)
    assert done(answer(node, 1, old, NOW + 0.05)) is None  # waits for the two in flight
    out = answer(node, 2, new, NOW + 0.06)
    assert done(out) is None  # one copy of seq 2000 is no quorum yet
    out = answer(node, 3, new, NOW + 0.07)
    finished = done(out)
    assert finished is not None and finished.op_id == op_id
    assert finished.result.record == new and finished.result.ok
    assert finished.result.copies == 3 and finished.result.repaired == 1
    assert stores_to(out, 1, new) and not stores_to(out, 2, new)
    assert node.status()["repairs"] == 1


def test_two_agreeing_copies_end_the_get_without_waiting_for_the_third() -> None:
    node, _, _ = asker()
    answer(node, 1, record(2000), NOW + 0.05)
    finished = done(answer(node, 2, record(2000), NOW + 0.06))
    assert finished is not None and finished.result.copies == 2
    assert finished.result.rpcs == 3 and finished.result.repaired == 0


def test_the_wait_for_more_copies_is_bounded_by_the_first_copys_round_trip() -> None:
    node, _, _ = asker()
    answer(node, 1, record(1000), NOW + 0.1)
    assert abs((node.next_timer() or 0.0) - (NOW + 0.2)) < 1e-6  # one more round trip at most
    assert done(node.handle_timer(NOW + 0.15)) is None
    finished = done(node.handle_timer(NOW + 0.2001))
    assert finished is not None and finished.result.ok
    assert finished.result.record == record(1000)


def test_a_get_ends_at_once_when_nothing_else_is_in_flight() -> None:
    node, _, _ = asker()
    answer(node, 1, None, NOW + 0.02)
    answer(node, 2, None, NOW + 0.03)
    finished = done(answer(node, 3, record(1000), NOW + 0.04))
    assert finished is not None and finished.result.copies == 1


def test_collect_span_zero_keeps_the_first_copy_as_before() -> None:
    node, _, _ = asker(collect_span=0.0)
    finished = done(answer(node, 1, record(1000), NOW + 0.05))
    assert finished is not None and finished.result.record == record(1000)


def test_a_stale_replica_held_by_the_asker_itself_is_replaced() -> None:
    node, _, _ = asker()
    node.store.put(parse_record(record(1000)), "10.0.9.0/24", NOW, 86400)
    answer(node, 1, record(2000), NOW + 0.05)
    assert done(answer(node, 2, record(2000), NOW + 0.06)) is not None
    assert [r.seq for r in node.store.get(KEY, NOW)] == [2000]


def test_a_records_lookup_repairs_each_publishers_stale_copy() -> None:
    node = make_node(0, (VPN,), paths=1)
    for index in HOLDERS:
        holder = make_node(index)
        node.table.add(Contact(holder.key, holder.node_id, holder.config.addresses), NOW)
    node.start_find_providers("storage", NOW)

    def provider(seq: int, index: int) -> bytes:
        addrs = make_node(index).config.addresses
        fields = provider_fields("storage", 10, [bytes(16)], addrs)
        return sign_record(identity(index), PROVIDER, seq, NOW + 3600, fields)

    out: list[Output] = []
    for index, seqs in ((1, (5, 7)), (2, (6, 7)), (3, (6, 8))):
        key = identity(index).public_key
        rid, pending = next((r, p) for r, p in node.pending.items() if p.contact.key == key)
        body = {
            "rid": rid,
            "contacts": [],
            "records": [provider(seqs[0], 60), provider(seqs[1], 61)],
        }
        data = encode(identity(index), msgs.PROVIDERS, body, NOW + 0.01 * index)
        out += node.datagram_received(data, pending.addr, NOW + 0.01 * index)
    finished = done(out)
    assert finished is not None and len(finished.result.records) == 2
    assert {parse_record(r).seq for r in finished.result.records} == {6, 8}
    # holder 1 had both publishers' old copies, holder 2 publisher 61's, holder 3 none
    assert finished.result.repaired == 3
    assert stores_to(out, 1, provider(6, 60)) and stores_to(out, 2, provider(8, 61))
    assert provider_key("storage") == finished.result.key
