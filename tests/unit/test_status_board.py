"""The status board and how `rms status` renders it."""

from __future__ import annotations

import pytest

from rms.cli.status import format_duration, render_table
from rms.status import SCHEMA_VERSION, NodeState, StatusBoard


def board() -> StatusBoard:
    return StatusBoard("ab" * 32, "1.2.3", 42, "2026-11-21T00:00:00+00:00")


def test_snapshot_has_the_base_fields() -> None:
    b = board()
    b.set_state(NodeState.RUNNING)
    snap = b.snapshot(12.3456)
    assert snap["schema_version"] == SCHEMA_VERSION
    assert snap["node_id"] == "ab" * 32
    assert snap["state"] == "running"
    assert snap["uptime_s"] == 12.346
    assert snap["problems"] == []


def test_sections_appear_at_top_level() -> None:
    b = board()
    b.add_section("vpns", lambda: [{"uuid": "u1", "members": 3}])
    assert b.snapshot(0)["vpns"] == [{"uuid": "u1", "members": 3}]


@pytest.mark.parametrize("name", ["node_id", "state", "schema_version"])
def test_a_section_cannot_shadow_a_base_field(name: str) -> None:
    with pytest.raises(ValueError, match="already taken"):
        board().add_section(name, dict)


def test_a_failing_check_makes_a_running_node_degraded() -> None:
    b = board()
    b.set_state(NodeState.RUNNING)
    b.add_check("disk", lambda: "state directory is full")
    snap = b.snapshot(1)
    assert snap["state"] == "degraded"
    assert snap["problems"] == ["disk: state directory is full"]


def test_a_starting_node_stays_starting_while_checks_fail() -> None:
    b = board()
    b.add_check("disk", lambda: "full")
    assert b.snapshot(0)["state"] == "starting"


def test_table_shows_base_fields_and_sections() -> None:
    b = board()
    b.set_state(NodeState.RUNNING)
    b.add_section("dht", lambda: {"routing_table": 12, "records": 3})
    b.add_section("vpns", lambda: [])
    text = render_table(b.snapshot(3725))
    assert "node       " + "ab" * 32 in text
    assert "state      running" in text
    assert "uptime     1h 2m 5s" in text
    assert "DHT\n  routing_table: 12\n  records: 3" in text
    assert "VPNS\n  (in no management VPN yet)" in text


def test_vpns_render_as_a_table_with_handshake_ages() -> None:
    vpn = {
        "uuid": "9b154c79-b1eb-8ec7-9443-f5c60476188a",
        "role": "guardian",
        "members": 3,
        "address": "fd17:f4c2:efa3:0:1::1",
        "peers": [{"handshake_age_s": 4.2}, {"handshake_age_s": 21.0}, {"handshake_age_s": None}],
    }
    b = board()
    b.set_state(NodeState.RUNNING)
    b.add_section("vpns", lambda: [vpn])
    lines = render_table(b.snapshot(1)).splitlines()
    head = lines.index("VPNS")
    assert lines[head + 1].split() == ["UUID", "ROLE", "MEMBERS", "ADDRESS", "HANDSHAKES"]
    row = lines[head + 2]
    assert row.startswith("  9b154c79-b1eb-8ec7-9443-f5c60476188a  guardian  3")
    assert row.endswith("2/3 peers, last 4-21 s ago")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (59.9, "59s"), (60, "1m 0s"), (86400 + 1, "1d 1s"), (-5, "0s")],
)
def test_durations(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown
