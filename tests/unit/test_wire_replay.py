"""The replay cache: bounded, and sound when full (the floor), checked by hand and by hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rms.wire import ReplayCache

AGE = 120_000
T0 = 1_700_000_000_000


def key(i: int) -> bytes:
    return i.to_bytes(48, "big")


def test_remembers_until_expiry_then_the_floor_takes_over() -> None:
    cache = ReplayCache(capacity=10, max_age_ms=AGE)
    cache.add(key(1), T0, T0)
    assert key(1) in cache
    assert not cache.is_below_floor(T0)
    cache.add(key(2), T0 + AGE + 1, T0 + AGE + 1)  # key 1 is now out of the window
    assert key(1) not in cache
    assert cache.floor_ms == T0
    assert cache.is_below_floor(T0)
    assert len(cache) == 1


def test_full_cache_evicts_the_oldest_and_raises_the_floor() -> None:
    cache = ReplayCache(capacity=3, max_age_ms=AGE)
    for i, ts in enumerate([T0 + 5, T0 + 1, T0 + 9]):
        cache.add(key(i), ts, T0 + 10)
    cache.add(key(3), T0 + 7, T0 + 10)
    assert len(cache) == 3
    assert key(1) not in cache
    assert cache.floor_ms == T0 + 1


def test_a_new_entry_older_than_all_is_not_kept_but_floored() -> None:
    cache = ReplayCache(capacity=2, max_age_ms=AGE)
    cache.add(key(0), T0 + 5, T0 + 10)
    cache.add(key(1), T0 + 6, T0 + 10)
    cache.add(key(2), T0 + 1, T0 + 10)
    assert key(2) not in cache
    assert cache.is_below_floor(T0 + 1)
    assert len(cache) == 2


def test_adding_twice_keeps_one_entry() -> None:
    cache = ReplayCache(capacity=2, max_age_ms=AGE)
    cache.add(key(0), T0, T0)
    cache.add(key(0), T0, T0)
    assert len(cache) == 1


def test_bad_parameters_are_local_errors() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ReplayCache(capacity=0, max_age_ms=AGE)
    with pytest.raises(ValueError, match="age"):
        ReplayCache(capacity=1, max_age_ms=-1)


OPS = st.lists(
    st.tuples(
        st.integers(0, 40),  # key
        st.integers(-200_000, 200_000),  # timestamp offset (ms)
        st.integers(-1_000, 60_000),  # clock step, sometimes backwards
    ),
    max_size=200,
)


@settings(max_examples=300)
@given(capacity=st.integers(1, 12), ops=OPS)
def test_bound_and_soundness_hold(capacity: int, ops: list[tuple[int, int, int]]) -> None:
    cache = ReplayCache(capacity=capacity, max_age_ms=AGE)
    now = T0
    first_seen: dict[bytes, int] = {}
    floors = [cache.floor_ms]
    for k, offset, step in ops:
        now += step
        first_seen.setdefault(key(k), now + offset)
        cache.add(key(k), now + offset, now)
        assert len(cache) <= capacity
        floors.append(cache.floor_ms)
        # Everything ever added is still refused: remembered, or at/below the floor.
        for seen_key, ts in first_seen.items():
            assert seen_key in cache or cache.is_below_floor(ts)
    assert floors == sorted(floors)  # the floor never goes down
