"""Availability from the uptime history: gaps, windows, restarts, and malformed files."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from rms.entitlement.availability import MAX_INTERVALS, HistoryError, UptimeHistory
from rms.policy import Policy

POLICY = Policy(availability_window_s=1000.0, uptime_heartbeat_s=10.0, uptime_gap_s=30.0)


def run(history: UptimeHistory, start: float, stop: float, step: float = 10.0) -> None:
    t = start
    while t <= stop:
        history.beat(t, POLICY)
        t += step


def test_nothing_observed_means_full_availability() -> None:
    assert UptimeHistory().availability(50.0, POLICY) == 1
    h = UptimeHistory()
    h.beat(50.0, POLICY)
    assert h.availability(50.0, POLICY) == 1


def test_steady_heartbeats_are_one_interval_and_full_availability() -> None:
    h = UptimeHistory()
    run(h, 0.0, 500.0)
    assert h.intervals == [(0.0, 500.0)]
    assert h.availability(500.0, POLICY) == 1


def test_a_gap_longer_than_the_limit_is_downtime() -> None:
    h = UptimeHistory()
    run(h, 0.0, 400.0)
    run(h, 600.0, 1000.0)
    assert len(h.intervals) == 2
    assert h.availability(1000.0, POLICY) == Fraction(800, 1000)


def test_a_gap_at_the_limit_is_not_downtime() -> None:
    h = UptimeHistory()
    h.beat(0.0, POLICY)
    h.beat(30.0, POLICY)
    assert h.intervals == [(0.0, 30.0)]


def test_silence_since_the_last_heartbeat_counts_once_it_exceeds_the_gap() -> None:
    h = UptimeHistory()
    run(h, 0.0, 100.0)
    assert h.availability(125.0, POLICY) == 1
    assert h.availability(200.0, POLICY) == Fraction(100, 200)


def test_the_window_forgets_old_downtime() -> None:
    h = UptimeHistory()
    run(h, 0.0, 100.0)
    run(h, 500.0, 3000.0)
    assert h.availability(3000.0, POLICY) == 1
    assert h.intervals == [(500.0, 3000.0)]


def test_the_clock_going_back_changes_nothing() -> None:
    h = UptimeHistory()
    run(h, 0.0, 100.0)
    h.beat(50.0, POLICY)
    h.beat(float("nan"), POLICY)
    assert h.intervals == [(0.0, 100.0)]


def test_a_node_restarting_forever_keeps_a_bounded_history() -> None:
    h = UptimeHistory()
    p = Policy(availability_window_s=10**9, uptime_heartbeat_s=1.0, uptime_gap_s=2.0)
    for i in range(MAX_INTERVALS + 50):
        h.beat(i * 10.0, p)
    assert len(h.intervals) == MAX_INTERVALS


def test_round_trip() -> None:
    h = UptimeHistory()
    run(h, 0.0, 100.0)
    run(h, 300.0, 400.0)
    again = UptimeHistory.from_json(h.to_json())
    assert again == h


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"format": "other"}',
        b'{"format": "truecloud-uptime/1", "first_seen": "x", "up": []}',
        b'{"format": "truecloud-uptime/1", "first_seen": 0, "up": [[5, 1]]}',
        b'{"format": "truecloud-uptime/1", "first_seen": 0, "up": [[0, 10], [5, 20]]}',
        b'{"format": "truecloud-uptime/1", "first_seen": 10, "up": [[0, 10]]}',
        b'{"format": "truecloud-uptime/1", "first_seen": null, "up": [[0, 10]]}',
        b'{"format": "truecloud-uptime/1", "first_seen": 0, "up": [[0, NaN]]}',
        b'{"format": "truecloud-uptime/1", "first_seen": true, "up": []}',
        b'{"format": "truecloud-uptime/1", "first_seen": 0, "up": [[0, 1, 2]]}',
    ],
)
def test_malformed_history_is_refused(data: bytes) -> None:
    with pytest.raises(HistoryError):
        UptimeHistory.from_json(data)


def test_oversized_history_is_refused() -> None:
    doc = {"format": "truecloud-uptime/1", "first_seen": 0, "up": [[i, i] for i in range(40000)]}
    with pytest.raises(HistoryError):
        UptimeHistory.from_json(json.dumps(doc).encode())
