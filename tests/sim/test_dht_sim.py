"""The DHT simulator at CI size: the real cores, seeded, in one process (docs/dht.md)."""

from __future__ import annotations

from rms.dht.sim import SimConfig, run


def test_500_nodes_with_20_percent_churn_find_their_records() -> None:
    report = run(SimConfig(nodes=500, churn=0.2, seed=1, records=100, lookups=200))
    assert report.recall >= 0.99, report
    assert report.rpc_ratio <= 1.3, report


def test_a_run_is_deterministic_for_a_seed() -> None:
    small = SimConfig(nodes=60, churn=0.2, seed=7, records=20, lookups=20)
    first, second = run(small), run(small)
    assert (first.found, first.rpcs_per_lookup, first.datagrams) == (
        second.found,
        second.rpcs_per_lookup,
        second.datagrams,
    )


def test_records_cross_vpns_through_the_nodes_in_several() -> None:
    # VPNs of 8; every node in 2 of them: most lookups target a node we share no VPN with.
    report = run(SimConfig(nodes=100, churn=0.0, seed=3, vpn_size=8, records=30, lookups=60))
    assert report.recall >= 0.9, report
