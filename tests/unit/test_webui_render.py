"""The web UI's HTML escapes what it shows and survives odd status sections."""

from __future__ import annotations

from typing import Any

import pytest

from rms.webui import render
from rms.webui.render import contribution_chart

EVIL = '<script>alert("x")</script>'


def test_every_value_is_escaped() -> None:
    status: dict[str, Any] = {
        "node_id": EVIL,
        "state": EVIL,
        "problems": [EVIL],
        "entitlement": {"contribution": {"source": EVIL}, "ratio": EVIL},
        "pool": {"name": EVIL, "state": EVIL, "volumes": [{"slot": EVIL, "provider": EVIL}]},
        "vpns": [{"uuid": EVIL, "peers": [{"node_id": EVIL, "address": EVIL}]}],
    }
    audits = {"own": {"standing": EVIL}, "history": [{"kind": EVIL, "auditor": EVIL}]}
    page = render.home(status, audits, "csrf", EVIL)
    assert "<script" not in page
    assert "&lt;script&gt;" in page


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"entitlement": None, "pool": [], "vpns": {}},
        {"entitlement": {"contribution": [], "availability": "x", "probation": None}},
        {"pool": {"volumes": [1, None, "x"]}, "vpns": [1, {"peers": [None]}]},
        {"entitlement": {"contribution": "x", "entitlement": 5, "probation": [1]}},
    ],
)
def test_odd_sections_render_without_error(status: dict[str, Any]) -> None:
    page = render.home(status, {"history": [None, 3]}, "csrf", None)
    assert page.startswith("<!DOCTYPE html>") and 'lang="en"' in page


def test_the_chart_states_every_number_in_its_description() -> None:
    svg = contribution_chart([("Offered", 20 * 2**30), ("Yours", 0)], "T & C")
    assert 'role="img"' in svg and "<title" in svg and "T &amp; C" in svg
    assert "Offered: 20.0 GiB; Yours: 0 B" in svg
    assert 'width="0"' in svg  # a zero bar has no length, its value is still written


def test_the_preview_keeps_the_offer_in_hidden_fields() -> None:
    result = {"entitlement": {"storage_bytes": 6 * 2**30}, "current": {"storage_bytes": 4 * 2**30}}
    page = render.preview(result, {"storage_bytes": 30 * 2**30, "cpu_millicores": 500}, "c")
    assert 'name="storage_bytes" value="32212254720"' in page
    assert "6.0 GiB" in page and "4.0 GiB" in page and "0.5 cores" in page


def test_the_ledger_section_states_totals_and_verification() -> None:
    ledger = {"count": 2, "verified": False, "problem": "entry 1: altered",
              "totals": {"provided": {"storage": 3600 * 2**30 * 3, "cpu": 7_200_000},
                         "used": {"storage": 0, "cpu": "x"}}}  # fmt: skip
    page = render.home({"ledger": ledger}, {}, "c", None)
    assert "3.00 GiB-hours" in page and "2.00 core-hours" in page and "unknown" in page
    assert "does not verify: entry 1: altered" in page


def test_a_ledger_being_verified_says_so() -> None:
    assert "the ledger is being verified" in render.home(
        {"ledger": {"verified": None}}, {}, "c", None
    )
