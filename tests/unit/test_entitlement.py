"""Entitlement arithmetic: zero, tiny, huge and changing contributions, probation, factors."""

from __future__ import annotations

from fractions import Fraction

import pytest

from rms.entitlement.arithmetic import (
    MAX_AMOUNT,
    Contribution,
    ContributionError,
    entitlement,
    format_size,
    parse_offer,
    parse_size,
    volume_size,
)
from rms.policy import Policy

GIB = 2**30
DAY = 86400.0
POLICY = Policy()
SEASONED = 0.0  # first seen long before NOW: out of probation
NOW = 100 * DAY


def compute(c: Contribution, availability: Fraction = Fraction(1), **kw: object) -> dict[str, int]:
    first_seen = kw.pop("first_seen", SEASONED)
    e = entitlement(POLICY, c, availability, first_seen=first_seen, now=NOW, **kw)  # type: ignore[arg-type]
    return {"storage": e.storage_bytes, "cpu": e.cpu_millicores}


def test_default_ratio_is_two_fifths_exactly() -> None:
    got = compute(Contribution(storage_bytes=20 * GIB, cpu_millicores=4000))
    assert got == {"storage": 8 * GIB, "cpu": 1600}


def test_zero_contribution_gives_zero() -> None:
    assert compute(Contribution()) == {"storage": 0, "cpu": 0}


def test_tiny_contribution_rounds_down_never_up() -> None:
    assert compute(Contribution(storage_bytes=1, cpu_millicores=2)) == {"storage": 0, "cpu": 0}
    assert compute(Contribution(storage_bytes=5))["storage"] == 2


def test_huge_contribution_is_exact_and_does_not_overflow() -> None:
    huge = MAX_AMOUNT
    got = compute(Contribution(storage_bytes=huge), Fraction(999_999, 1_000_000))
    assert got["storage"] == huge * 2 * 999_999 // (5 * 1_000_000)
    assert isinstance(got["storage"], int)


def test_amounts_out_of_range_or_not_ints_are_refused() -> None:
    for bad in (-1, MAX_AMOUNT + 1, 1.5, True, "10"):
        with pytest.raises(ContributionError):
            Contribution(storage_bytes=bad)  # type: ignore[arg-type]
    with pytest.raises(ContributionError):
        Contribution(leased_bytes=-5)


def test_changing_contribution_changes_entitlement_proportionally() -> None:
    before = compute(Contribution(storage_bytes=10 * GIB))["storage"]
    after = compute(Contribution(storage_bytes=30 * GIB))["storage"]
    assert after == 3 * before
    assert compute(Contribution(storage_bytes=0))["storage"] == 0


def test_only_leased_bytes_passing_audits_count() -> None:
    c = Contribution(storage_bytes=100 * GIB, leased_bytes=60 * GIB, audited_bytes=50 * GIB)
    assert c.verified_storage() == 90 * GIB
    assert compute(c)["storage"] == 36 * GIB


def test_provider_reports_larger_than_the_offer_are_clamped() -> None:
    c = Contribution(storage_bytes=10 * GIB, leased_bytes=99 * GIB, audited_bytes=99 * GIB)
    assert c.verified_storage() == 10 * GIB
    c = Contribution(storage_bytes=10 * GIB, leased_bytes=4 * GIB, audited_bytes=9 * GIB)
    assert c.verified_storage() == 10 * GIB


def test_unmeasured_contribution_counts_the_offer() -> None:
    c = Contribution(storage_bytes=10 * GIB)
    assert not c.measured
    assert c.verified_storage() == 10 * GIB


def test_leased_bytes_count_while_no_audit_result_is_known() -> None:
    c = Contribution(storage_bytes=10 * GIB, leased_bytes=5 * GIB)
    assert c.measured
    assert c.verified_storage() == 10 * GIB


@pytest.mark.parametrize(
    ("offer", "capacity", "leased", "audited", "verified"),
    [
        (20 * GIB, 2 * GIB, None, None, 2 * GIB),  # the provider has room for less than offered
        (2 * GIB, 20 * GIB, None, None, 2 * GIB),  # more room than offered: the offer counts
        (20 * GIB, 0, None, None, 0),  # no room at all
        (20 * GIB, 2 * GIB, GIB, None, 2 * GIB),  # leased, audits unknown: all of it counts
        (20 * GIB, 2 * GIB, GIB, GIB // 4, GIB + GIB // 4),  # only the audited part of leases
        (20 * GIB, 2 * GIB, 5 * GIB, 5 * GIB, 2 * GIB),  # over-leased: clamped to the room
        (0, 2 * GIB, GIB, GIB, 0),  # nothing offered, nothing counts
        (MAX_AMOUNT, MAX_AMOUNT, MAX_AMOUNT, 0, 0),  # huge, all leased, none audited
        (1, 1, 0, None, 1),  # tiny
    ],
)
def test_verified_storage_is_the_lower_of_offer_and_measured_room(
    offer: int, capacity: int, leased: int | None, audited: int | None, verified: int
) -> None:
    c = Contribution(
        storage_bytes=offer, capacity_bytes=capacity, leased_bytes=leased, audited_bytes=audited
    )
    assert c.verified_storage() == verified
    assert compute(c)["storage"] == verified * 2 // 5


def test_measured_capacity_out_of_range_is_refused() -> None:
    for bad in (-1, MAX_AMOUNT + 1, 1.5, True, "1"):
        with pytest.raises(ContributionError):
            Contribution(storage_bytes=1, capacity_bytes=bad)  # type: ignore[arg-type]


def test_availability_scales_linearly_and_zero_availability_gives_nothing() -> None:
    c = Contribution(storage_bytes=10 * GIB, cpu_millicores=1000)
    assert compute(c, Fraction(1, 2))["storage"] == 2 * GIB
    assert compute(c, Fraction(0)) == {"storage": 0, "cpu": 0}
    with pytest.raises(ContributionError):
        compute(c, Fraction(11, 10))


def test_probation_applies_its_factor_until_the_period_ends() -> None:
    c = Contribution(storage_bytes=10 * GIB)
    start = NOW - POLICY.probation_s
    new = entitlement(POLICY, c, Fraction(1), first_seen=start + 1, now=NOW)
    assert new.probation and new.probation_left_s == 1.0
    assert new.storage_bytes == 2 * GIB
    done = entitlement(POLICY, c, Fraction(1), first_seen=start, now=NOW)
    assert not done.probation and done.storage_bytes == 4 * GIB


def test_a_node_never_seen_is_in_full_probation() -> None:
    e = entitlement(POLICY, Contribution(storage_bytes=GIB), Fraction(1), first_seen=None, now=NOW)
    assert e.probation and e.probation_left_s == POLICY.probation_s


def test_first_seen_in_the_future_does_not_extend_probation_beyond_its_length() -> None:
    e = entitlement(POLICY, Contribution(), Fraction(1), first_seen=NOW + 10 * DAY, now=NOW)
    assert e.probation_left_s == POLICY.probation_s


def test_reputation_penalty_multiplies_with_probation() -> None:
    c = Contribution(storage_bytes=10 * GIB)
    got = compute(c, first_seen=NOW, reputation_factor=Fraction(1, 2))
    assert got["storage"] == 1 * GIB
    with pytest.raises(ContributionError):
        compute(c, reputation_factor=Fraction(-1))


def test_policy_ratio_bounds() -> None:
    assert compute(Contribution(storage_bytes=300))["storage"] == 120
    low = Policy(entitlement_ratio=1 / 3)
    e = entitlement(low, Contribution(storage_bytes=300), Fraction(1), first_seen=0, now=NOW)
    assert e.storage_bytes == 99  # 0.3333333333333333 as written, rounded down
    for bad in (0.3, 0.51):
        with pytest.raises(ValueError):
            Policy(entitlement_ratio=bad)


def test_volume_size_is_a_fifth() -> None:
    assert volume_size(10 * GIB) == 2 * GIB
    assert volume_size(4) == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("20 GiB", 20 * GIB), ("500GB", 500 * 10**9), ("1.5 TiB", 3 * 2**39), ("4096", 4096),
     ("0", 0), ("8 EiB", MAX_AMOUNT + 1)],
)  # fmt: skip
def test_parse_size(text: str, expected: int) -> None:
    if expected > MAX_AMOUNT:
        with pytest.raises(ContributionError):
            parse_size(text)
    else:
        assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "GiB", "-1 GiB", "12 parsecs", "nan GB", "1/0 GB", "9" * 50])
def test_parse_size_refuses_garbage(bad: str) -> None:
    with pytest.raises(ContributionError):
        parse_size(bad)


def test_format_size() -> None:
    assert format_size(512) == "512 B"
    assert format_size(20 * GIB) == "20.0 GiB"
    assert format_size(MAX_AMOUNT) == "8.0 EiB"


def test_parse_offer() -> None:
    assert parse_offer("20 GiB", "1.5") == {"storage_bytes": 20 * GIB, "cpu_millicores": 1500}
    assert parse_offer("1 GB", None) == {"storage_bytes": 10**9}
    for cpu in ("NaN", "1e9", "-1", "1/0", "two", ""):
        with pytest.raises(ContributionError):
            parse_offer("1 GiB", cpu)
