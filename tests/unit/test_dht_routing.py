"""Routing table rules: proven contacts only, subnet cap, old contacts kept, bounded size."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rms.dht.routing import RoutingTable, bucket_index, subnet_of
from rms.dht.types import Address, Contact


def contact(node_id: bytes, host: str) -> Contact:
    return Contact(node_id, node_id, (Address(bytes(16), host, 1),))


def test_subnets() -> None:
    assert subnet_of("10.1.2.3") == "10.1.2.0/24"
    assert subnet_of("fd00:1:2:3::1") == "fd00:1:2::/48"
    assert subnet_of("node-7") == "node-7"


def test_at_most_two_contacts_of_one_subnet_per_bucket() -> None:
    table = RoutingTable(bytes(32), 20, 5, 2, 3)
    for i in range(5):
        table.add(contact(bytes([0x80, i]) + bytes(30), f"10.0.0.{i}"), 1.0)
    assert len(table) == 2 and table.refused_subnet == 3


def test_a_full_bucket_keeps_its_old_contacts_until_they_fail_three_times() -> None:
    table = RoutingTable(bytes(32), 2, 5, 2, 3)
    old = [contact(bytes([0x80, i]) + bytes(30), f"10.{i}.0.1") for i in range(2)]
    for c in old:
        table.add(c, 1.0)
    newcomer = contact(bytes([0x80, 9]) + bytes(30), "10.9.0.1")
    assert table.add(newcomer, 2.0) is old[0]  # ping the least recently seen
    assert table.get(newcomer.node_id) is None
    assert not table.failed(old[0].node_id) and not table.failed(old[0].node_id)
    assert table.failed(old[0].node_id)
    assert table.get(newcomer.node_id) is newcomer


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=300))
def test_buckets_never_exceed_k(ids: list[bytes]) -> None:
    table = RoutingTable(bytes(32), 4, 2, 2, 3)
    for i, node_id in enumerate(ids):
        table.add(contact(node_id, f"10.{i % 250}.{i // 250}.1"), float(i))
    assert all(len(b.contacts) <= 4 and len(b.replacements) <= 2 for b in table.buckets)
    for c in table.all_contacts():
        assert table.get(c.node_id) is c and bucket_index(bytes(32), c.node_id) < 256
