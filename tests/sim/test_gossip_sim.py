"""The gossip simulator at CI size: 1,000 real cores, 5% loss, 20% churn, a partition."""

from __future__ import annotations

import random

import pytest

from rms.gossip.sim import BroadcastResult, SimConfig, Simulation, build_vpns, main


def test_vpns_are_bounded_and_each_node_is_in_two() -> None:
    vpns = build_vpns(100, 8, 2, random.Random(1))
    assert all(len(v) <= 8 for v in vpns)
    counts = [sum(n in v for v in vpns) for n in range(100)]
    assert counts == [2] * 100


@pytest.fixture(scope="module")
def results() -> list[BroadcastResult]:
    sim = Simulation(SimConfig(nodes=1000, loss=0.05, churn=0.2, seed=7))
    return [sim.broadcast() for _ in range(5)]


def test_every_broadcast_reaches_every_live_node(results: list[BroadcastResult]) -> None:
    for r in results:
        assert r.reachable == r.live
        assert r.reached == r.live


def test_no_node_sends_more_than_its_degree(results: list[BroadcastResult]) -> None:
    assert max(r.max_send_ratio for r in results) <= 1.0


def test_about_one_signature_check_per_delivery(results: list[BroadcastResult]) -> None:
    for r in results:
        # The few above 1 are the answers the origin opens.
        assert 1.0 <= r.checks_per_delivery < 1.01


def test_answers_come_back_to_the_requester(results: list[BroadcastResult]) -> None:
    sent = sum(r.answers_sent for r in results)
    received = sum(r.answers_received for r in results)
    assert received >= 0.8 * sent  # point to point, no retransmission, 5% loss a hop


def test_a_partition_is_reached_up_to_its_cut() -> None:
    sim = Simulation(SimConfig(nodes=600, partition=True, seed=3))
    r = sim.broadcast()
    assert r.reachable < r.live
    assert r.reached == r.reachable


def test_a_run_is_repeatable() -> None:
    one = Simulation(SimConfig(nodes=200, seed=5)).broadcast()
    two = Simulation(SimConfig(nodes=200, seed=5)).broadcast()
    assert one == two


def test_the_command_line_reports_full_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--nodes", "200", "--broadcasts", "2"]) == 0
    assert '"worst_coverage": 1.0' in capsys.readouterr().out
