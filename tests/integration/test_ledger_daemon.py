"""The ledger in the real daemon: sign, record, query, and an altered file on restart."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest

from rms.control.client import ControlError
from rms.identity import NodeIdentity, load_or_create
from rms.ledger import receipt as rcpt
from tests.integration.conftest import RunningDaemon, launch, stop_daemon

PEER = NodeIdentity.from_seed(b"\x21" * 32)


def countersigned(d: RunningDaemon, serial: int) -> dict[str, Any]:
    me = load_or_create(d.state_dir)
    body = rcpt.make_body(me.public_key, PEER.public_key, "storage", amount=1000 * serial,
                          period=(1_000_000, 1_003_600), lease="vol-1", serial=serial)  # fmt: skip
    mine = d.call("/v1/ledger/sign", {"body": body})
    assert mine["role"] == "provider"
    return {"body": body, "provider_sig": mine["sig"], "consumer_sig": rcpt.sign_as(body, PEER)[1]}


def test_receipts_are_signed_recorded_and_queried(daemon: RunningDaemon) -> None:
    for serial in (1, 2):
        entry = daemon.call("/v1/ledger/receipts", countersigned(daemon, serial))["entry"]
        assert entry["index"] == serial - 1
    got = daemon.call("/v1/ledger?limit=1&offset=1")
    assert got["count"] == 2 and got["verified"] is True
    assert [e["index"] for e in got["entries"]] == [1]
    assert got["totals"]["provided"]["storage"] == 3000
    status = json.loads(daemon.rms("status", "--json").stdout)
    assert status["ledger"]["count"] == 2


def test_forged_and_replayed_receipts_are_refused(daemon: RunningDaemon) -> None:
    good = countersigned(daemon, 1)
    forged = json.loads(json.dumps(good))
    forged["body"]["amount"] = 10**12
    with pytest.raises(ControlError, match="400"):
        daemon.call("/v1/ledger/receipts", forged)
    daemon.call("/v1/ledger/receipts", good)
    with pytest.raises(ControlError, match="409"):
        daemon.call("/v1/ledger/receipts", good)
    with pytest.raises(ControlError, match="400"):
        daemon.call("/v1/ledger/sign", {"body": {"amount": 1}})
    with pytest.raises(ControlError, match="400"):
        daemon.call("/v1/ledger?limit=100000")
    assert daemon.call("/v1/ledger")["count"] == 1


def test_an_altered_ledger_degrades_the_node_after_restart(daemon: RunningDaemon) -> None:
    for serial in (1, 2, 3):
        daemon.call("/v1/ledger/receipts", countersigned(daemon, serial))
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
    assert daemon.next_notification(5).startswith("STOPPING=1")
    path = daemon.state_dir / "ledger.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[2])
    again = launch(daemon.env, daemon.notify)
    try:
        deadline = time.monotonic() + 20  # the ledger is verified in a worker after READY
        while again.call("/v1/ledger")["verified"] is None and time.monotonic() < deadline:
            time.sleep(0.2)
        result = again.rms("status", "--json")
        assert result.returncode == 1
        status = json.loads(result.stdout)
        assert status["state"] == "degraded"
        assert any(p.startswith("ledger: ledger does not verify") for p in status["problems"])
        with pytest.raises(ControlError, match="409"):
            again.call("/v1/ledger/receipts", countersigned(again, 4))
    finally:
        stop_daemon(again)
