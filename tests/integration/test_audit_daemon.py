"""Audits in the real daemon: the CFS's reports signed by the node, others' reports, refusals."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from rms.audit import report as rep
from rms.control.client import ControlError
from rms.identity import NodeIdentity, load_or_create
from tests.integration.conftest import RunningDaemon

PROVIDER = NodeIdentity.from_seed(b"\x91" * 32)
CLIENTS = [NodeIdentity.from_seed(bytes([0xA0 + i]) * 32) for i in range(2)]


def body(auditor: bytes, provider: bytes, failed: int, round_: int = 1) -> dict[str, Any]:
    return rep.make_body(auditor, provider, "vol-1", round_=round_, at=int(time.time()),
                         kind="read", checked=16, failed=failed)  # fmt: skip


def test_the_cfs_reports_through_the_node_and_history_is_served(daemon: RunningDaemon) -> None:
    me = load_or_create(daemon.state_dir).public_key
    got = daemon.call("/v1/audits/sign", {"body": body(me, PROVIDER.public_key, 0)})
    assert got["passed"] is True and got["report"]["body"]["auditor"] == me.hex()
    audits = daemon.call("/v1/audits?limit=5")
    assert audits["reports"] == 1 and audits["standings"][0]["standing"] == "ok"


def test_corroborated_failures_about_this_node_degrade_its_status(daemon: RunningDaemon) -> None:
    me = load_or_create(daemon.state_dir).public_key
    for c in CLIENTS:
        daemon.call("/v1/audits/reports", rep.sign_report(body(c.public_key, me, 16), c))
    result = daemon.rms("status", "--json")
    assert result.returncode == 1
    status = json.loads(result.stdout)
    assert status["audits"]["own"]["standing"] == "warned"
    assert any(p.startswith("audits: clients report failed audits") for p in status["problems"])


@pytest.mark.parametrize("route", ["/v1/audits/reports", "/v1/audits/sign"])
def test_forged_and_malformed_reports_are_refused(daemon: RunningDaemon, route: str) -> None:
    c = CLIENTS[0]
    forged = rep.sign_report(body(c.public_key, PROVIDER.public_key, 0), c)
    forged["body"]["failed"] = 3
    for bad in (forged, {"body": 5}, {"body": body(c.public_key, PROVIDER.public_key, 0)}):
        with pytest.raises(ControlError, match="400"):
            daemon.call(route, bad)
    assert daemon.call("/v1/audits")["reports"] == 0
