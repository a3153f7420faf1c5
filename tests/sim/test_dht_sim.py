"""The DHT simulator at CI size: the real cores, seeded, in one process (docs/dht.md)."""

from __future__ import annotations

from dataclasses import replace

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


def test_gets_return_the_newest_copy_and_repair_stale_replicas_at_no_rpc_cost() -> None:
    # Every record is published again after the churn: the nodes that held it and are no
    # longer among its k closest keep the old one, which a get may meet first.
    base = SimConfig(nodes=100, churn=0.2, seed=2, records=30, lookups=80, republish=1.0)
    first_copy = run(replace(base, collect_span=0.0))
    collected = run(base)
    assert collected.recall >= 0.99 and first_copy.recall >= 0.99, (collected, first_copy)
    assert collected.fresh >= first_copy.fresh, (collected, first_copy)
    assert collected.copies_mean > 1.5 and collected.repaired > 0, collected
    assert first_copy.copies_mean == 1.0 and first_copy.repaired == 0, first_copy
    assert abs(collected.rpcs_per_lookup - first_copy.rpcs_per_lookup) <= 0.05, (
        collected,
        first_copy,
    )
