"""The audit service: history on disk, own standing, entitlement penalty, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rms.audit import report as rep
from rms.audit.service import AUDITS_NAME, AuditService
from rms.cli.status import render_audits, render_entitlement
from rms.config import Config, ContributionSection, NodeSection
from rms.entitlement.service import EntitlementService
from rms.identity import NodeIdentity
from rms.policy import DEFAULT

GIB = 2**30
ME = NodeIdentity.from_seed(b"\x61" * 32)
CLIENTS = [NodeIdentity.from_seed(bytes([0x70 + i]) * 32) for i in range(3)]
DAY = 86400.0


class Clock:
    now = 100 * DAY

    def __call__(self) -> float:
        return self.now


def service(tmp_path: Path, clock: Clock) -> AuditService:
    config = Config(node=NodeSection(state_dir=tmp_path),
                    contribution=ContributionSection(storage="10 GiB"))  # fmt: skip
    entitlement = EntitlementService(config, clock)
    entitlement.history.first_seen = 0.0  # long past probation, and up ever since
    entitlement.history.intervals = [(0.0, clock.now)]
    return AuditService(tmp_path, ME, entitlement, clock)


def about_me(client: NodeIdentity, round_: int, failed: int, at: float) -> dict[str, Any]:
    body = rep.make_body(client.public_key, ME.public_key, "vol", round_=round_, at=int(at),
                         kind="read", checked=16, failed=failed)  # fmt: skip
    return rep.sign_report(body, client)


def test_failed_audits_of_this_node_warn_then_penalise_its_entitlement(tmp_path: Path) -> None:
    clock = Clock()
    audits = service(tmp_path, clock)
    ent = audits.entitlement
    assert ent.snapshot()["entitlement"]["storage_bytes"] == 4 * GIB
    for r in range(3):
        for c in CLIENTS[:2]:
            audits.receive(about_me(c, r, 16, clock.now))
    assert "failed audits" in str(audits.problem())
    assert audits.summary()["own"]["standing"] == "warned"
    clock.now += DEFAULT.audit_grace_s
    ent.history.intervals = [(0.0, clock.now)]  # up all along
    for c in CLIENTS[:2]:
        audits.receive(about_me(c, 10, 16, clock.now))
    assert audits.summary()["own"]["standing"] == "penalised"
    assert "penalised" in str(audits.problem())
    assert ent.snapshot()["entitlement"]["storage_bytes"] == 2 * GIB


def test_standings_survive_a_restart_and_damaged_lines_are_skipped(tmp_path: Path) -> None:
    clock = Clock()
    audits = service(tmp_path, clock)
    for c in CLIENTS[:2]:
        audits.receive(about_me(c, 1, 16, clock.now))
    with (tmp_path / AUDITS_NAME).open("ab") as f:
        f.write(b"{broken\n" + json.dumps({"body": {}, "sig": "00"}).encode() + b"\n")
    again = service(tmp_path, clock)
    assert again.summary()["own"]["standing"] == "warned"
    assert again.refused == 2 and again.summary()["reports"] == 2


def test_this_nodes_cfs_reports_are_signed_by_the_node(tmp_path: Path) -> None:
    clock = Clock()
    audits = service(tmp_path, clock)
    provider = CLIENTS[0]
    body = rep.make_body(ME.public_key, provider.public_key, "vol", round_=1,
                         at=int(clock.now), kind="scrub", checked=100, failed=0)  # fmt: skip
    report = audits.own_body_signed(body)
    assert report.auditor == ME.public_key and report.passed
    assert audits.providers()[0]["provider"] == provider.public_key.hex()
    assert audits.recent(5)[0]["kind"] == "scrub"
    with pytest.raises(rep.ReportError):
        audits.own_body_signed(dict(body, auditor=provider.public_key.hex()))


def test_forged_reports_are_refused_and_not_kept(tmp_path: Path) -> None:
    clock = Clock()
    audits = service(tmp_path, clock)
    forged = about_me(CLIENTS[0], 1, 16, clock.now)
    forged["body"]["failed"] = 15
    with pytest.raises(rep.ReportError, match="forged"):
        audits.receive(forged)
    with pytest.raises(rep.ReportError):
        audits.own_body_signed([1])
    assert not (tmp_path / AUDITS_NAME).exists()
    assert audits.summary()["reports"] == 0


def test_the_history_file_is_compacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rms.audit.service.MAX_KEPT", 5)
    clock = Clock()
    audits = service(tmp_path, clock)
    audits.history = type(audits.history)(maxlen=5)
    for r in range(12):
        audits.receive(about_me(CLIENTS[0], r, 0, clock.now))
    lines = (tmp_path / AUDITS_NAME).read_bytes().splitlines()
    assert len(lines) <= 10
    assert json.loads(lines[-1])["body"]["round"] == 11


def test_rms_status_renders_the_audits_and_entitlement(tmp_path: Path) -> None:
    clock = Clock()
    audits = service(tmp_path, clock)
    for c in CLIENTS[:2]:
        audits.receive(about_me(c, 1, 16, clock.now))
    lines = render_audits(audits.summary())
    assert lines[0].startswith("  this node  warned (score")
    assert lines[1] == "  providers  1 known, 1 warned, 0 penalised; 2 reports kept"
    shown = render_entitlement(audits.entitlement.snapshot())
    assert shown[2] == "  entitlement   4.0 GiB storage, 0 cores CPU (ratio 0.4)"
    assert shown[-1] == "  policy        built-in defaults"
