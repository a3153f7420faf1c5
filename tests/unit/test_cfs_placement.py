"""Placement of a pool's 8 volumes: distinct providers, locations, networks, address blocks."""

from __future__ import annotations

import random
from ipaddress import ip_address

import pytest

from cfs.placement import Candidate, PlacementRefused, place, valid

OWN = "ff" * 32


def cand(
    n: int, *, loc: int | None = None, net: int | None = None, addr: str = "", rel: float = 0.5
) -> Candidate:
    """Candidate n, distinct in everything unless told otherwise."""
    return Candidate(
        provider=f"{n:064x}",
        location=f"loc-{n if loc is None else loc}",
        network=f"net-{n if net is None else net}",
        address=ip_address(addr or f"198.18.{n}.10"),
        reliability=rel,
    )


def distinct(chosen: tuple[Candidate, ...]) -> bool:
    return all(not a.clashes(b) for i, a in enumerate(chosen) for b in chosen[i + 1 :])


def test_eight_distinct_most_reliable_first() -> None:
    offers = [cand(n, rel=n / 20) for n in range(1, 13)]
    chosen = place(offers, own_id=OWN)
    assert len(chosen) == 8 and distinct(chosen)
    assert [c.provider for c in chosen] == [f"{n:064x}" for n in range(12, 4, -1)]


def test_never_this_node_and_refuses_below_eight_with_reason() -> None:
    offers = [cand(n) for n in range(1, 9)]
    offers[0] = Candidate(OWN, "loc-x", "net-x", ip_address("198.18.200.1"))
    with pytest.raises(PlacementRefused, match=r"only 7 of 8 .* 1 this node"):
        place(offers, own_id=OWN)


@pytest.mark.parametrize(
    ("clash", "why"),
    [
        ({"loc": 1}, "location"),
        ({"net": 1}, "network"),
        ({"addr": "198.18.1.99"}, "same /24"),
    ],
)
def test_shared_location_network_or_block_counts_once(clash: dict[str, object], why: str) -> None:
    offers = [cand(n) for n in range(1, 9)] + [cand(9, **clash)]  # type: ignore[arg-type]
    chosen = place(offers, own_id=OWN)
    assert distinct(chosen), why
    offers = [cand(n) for n in range(1, 8)] + [cand(9, **clash)]  # type: ignore[arg-type]
    with pytest.raises(PlacementRefused, match="only 7 of 8"):
        place(offers, own_id=OWN)


def test_ipv6_blocks_are_48s() -> None:
    same = [cand(n, addr=f"2001:db8:1:{n}::1") for n in range(1, 9)]
    with pytest.raises(PlacementRefused, match="only 1 of 8"):
        place(same, own_id=OWN)
    apart = [cand(n, addr=f"2001:db8:{n}::1") for n in range(1, 9)]
    assert len(place(apart, own_id=OWN)) == 8


def test_search_backs_up_where_greedy_would_fail() -> None:
    # The most reliable offer shares a location with one and a network with another; taking
    # it leaves 7. Without it there are 8: the search must find them.
    offers = [cand(n) for n in range(1, 9)]
    offers.append(cand(9, loc=1, net=2, rel=0.99))
    chosen = place(offers, own_id=OWN)
    assert len(chosen) == 8 and distinct(chosen)
    assert all(c.provider != f"{9:064x}" for c in chosen)


def test_replacement_differs_from_the_seven_kept_and_avoids_the_lost() -> None:
    pool = [cand(n) for n in range(1, 9)]
    kept, lost = pool[1:], pool[0]
    offers = [
        lost,
        cand(20, loc=3),
        cand(21, addr="198.18.4.77"),
        cand(22, rel=0.2),
        cand(23, rel=0.1),
    ]
    (new,) = place(offers, count=1, own_id=OWN, keep=kept, avoid=[lost.provider])
    assert new.provider == f"{22:064x}"
    with pytest.raises(PlacementRefused, match=r"1 avoided.*2 clash with kept"):
        place(offers[:3], count=1, own_id=OWN, keep=kept, avoid=[lost.provider])


@pytest.mark.parametrize("score", [float("nan"), float("inf"), -0.1, 1.5])
def test_forged_scores_and_empty_ids_are_refused(score: float) -> None:
    bad = Candidate("aa", "l", "n", ip_address("198.18.0.1"), reliability=score)
    assert not valid(bad)
    assert not valid(Candidate("", "l", "n", ip_address("198.18.0.1")))
    offers = [bad] + [cand(n) for n in range(1, 8)]
    with pytest.raises(PlacementRefused, match="1 invalid"):
        place(offers, own_id=OWN)


def test_a_provider_offering_twice_counts_once() -> None:
    offers = [cand(n) for n in range(1, 8)] + [cand(1, loc=50, net=50, addr="198.18.50.1")]
    with pytest.raises(PlacementRefused, match="1 duplicate"):
        place(offers, own_id=OWN)


def test_many_clashing_offers_end_in_bounded_time() -> None:
    # 300 offers from 7 locations: no 8 distinct exist; the search budget must end it.
    rng = random.Random(5)
    offers = [cand(n, loc=rng.randrange(7), addr=f"10.{n // 250}.{n % 250}.1") for n in range(300)]
    with pytest.raises(PlacementRefused, match="only 7 of 8"):
        place(offers, own_id=OWN)


def test_seeded_random_offer_sets_always_give_distinct_sets() -> None:
    rng = random.Random(11)
    for _ in range(50):
        offers = [
            cand(n, loc=rng.randrange(12), net=rng.randrange(12), rel=rng.random())
            for n in range(rng.randrange(5, 30))
        ]
        try:
            chosen = place(offers, own_id=OWN)
        except PlacementRefused:
            continue
        assert len(chosen) == 8 and distinct(chosen)


def test_unknown_public_addresses_are_placed_by_uuids_alone() -> None:
    offers = [Candidate(f"{n:064x}", f"loc-{n}", f"net-{n}", None) for n in range(1, 9)]
    assert len(place(offers, own_id=OWN)) == 8
    offers[0] = Candidate(f"{1:064x}", "loc-2", "net-1", None)
    with pytest.raises(PlacementRefused, match="only 7 of 8"):
        place(offers, own_id=OWN)
