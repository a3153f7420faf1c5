"""The lookup's request window (alpha near the target, one at a time far from it) and the
far-bucket refreshes of a join."""

from __future__ import annotations

from rms.dht.lookup import Lookup
from rms.dht.routing import RoutingTable, bucket_index, distance
from rms.dht.types import Address, Contact
from tests.unit.dht_support import joined

TARGET = bytes(32)


def contact(first: int, second: int = 0) -> Contact:
    node_id = bytes([first, second]) + bytes(30)
    return Contact(node_id, node_id, (Address(bytes(16), f"10.{first}.{second}.1", 1),))


def near_of(contacts: list[Contact]) -> int:
    return max(distance(c.node_id, TARGET) for c in contacts)


def test_far_candidates_are_asked_one_at_a_time_per_path() -> None:
    near = [contact(0, i) for i in range(1, 4)]
    far = [contact(0x80 + i) for i in range(6)]
    lookup = Lookup(TARGET, far, 2, 3, 20, near=near_of(near))
    first = lookup.next_queries()
    assert sorted(i for i, _ in first) == [0, 1]  # one far request per path
    assert lookup.next_queries() == []  # nothing more while it is out
    index, asked = first[0]
    lookup.answered(index, asked.node_id, near)  # it points near the target
    second = lookup.next_queries()
    assert [c.node_id for _, c in second] == [c.node_id for c in near]  # alpha at once


def test_without_a_radius_every_path_asks_alpha_at_once() -> None:
    far = [contact(0x80 + i) for i in range(6)]
    lookup = Lookup(TARGET, far, 2, 3, 20)
    assert len(lookup.next_queries()) == 6


def test_a_failed_far_request_lets_the_path_ask_the_next_one() -> None:
    far = [contact(0x80 + i) for i in range(4)]
    lookup = Lookup(TARGET, far, 1, 3, 20, near=1)
    [(index, asked)] = lookup.next_queries()
    lookup.failed(index, asked.node_id)
    [(_, again)] = lookup.next_queries()
    assert again.node_id != asked.node_id


def test_disjoint_paths_still_never_share_a_node() -> None:
    near = [contact(0, i) for i in range(1, 9)]
    lookup = Lookup(TARGET, near, 2, 3, 20, near=near_of(near))
    asked = lookup.next_queries()
    for index, node in asked:
        lookup.answered(index, node.node_id, near)  # both paths hear of every node
    later = lookup.next_queries()
    owners: dict[bytes, int] = {}
    for index, node in asked + later:
        assert owners.setdefault(node.node_id, index) == index


def test_near_radius_is_the_distance_to_the_kth_closest_contact() -> None:
    table = RoutingTable(TARGET, 4, 2, 2, 3)
    assert table.near_radius() is None  # fewer than k contacts: no estimate
    contacts = [contact(i) for i in (1, 2, 4, 8, 16)]
    for c in contacts:
        table.add(c, 1.0)
    assert table.near_radius() == distance(contacts[3].node_id, TARGET)


def test_a_join_refreshes_only_the_far_buckets_its_own_lookup_left_empty() -> None:
    nodes, lean = joined(30)  # join_refresh_below = 1: empty buckets only
    _, full = joined(30, join_refresh_below=20)  # every far bucket, as the paper does
    assert lean.sent < full.sent
    for node in nodes[1:]:
        closest = node.table.closest(node.node_id, 1)
        nearest = bucket_index(node.node_id, closest[0].node_id)
        # Every bucket further than the closest neighbour holds someone, refreshed or not.
        far = [i for i in range(nearest) if node.table.buckets[i].contacts]
        assert len(far) >= nearest // 2, (nearest, far)
