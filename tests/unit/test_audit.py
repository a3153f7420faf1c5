"""Signed audit reports and read challenges."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from rms.audit import report as rep
from rms.audit.report import BlockLog, ReportError
from rms.identity import NodeIdentity
from rms.ledger.canonical import sign

CLIENT, PROVIDER, OTHER = (NodeIdentity.from_seed(bytes([i]) * 32) for i in (31, 32, 33))
NOW = 1_763_769_600


def signed(auditor: NodeIdentity = CLIENT, **over: Any) -> dict[str, Any]:
    body = rep.make_body(auditor.public_key, PROVIDER.public_key, "vol-1", round_=1, at=NOW,
                         kind="read", checked=16, failed=2)  # fmt: skip
    body.update(over)
    return {"body": body, "sig": sign(auditor, rep.DOMAIN, body)}


def test_a_signed_report_verifies() -> None:
    got = rep.check(rep.sign_report(signed()["body"], CLIENT), NOW)
    assert got.auditor == CLIENT.public_key and got.failed == 2 and not got.passed


def test_an_altered_report_is_refused() -> None:
    report = signed()
    report["body"]["failed"] = 16
    with pytest.raises(ReportError, match="forged or altered"):
        rep.check(report, NOW)


def test_a_report_signed_by_someone_else_than_its_auditor_is_refused() -> None:
    report = signed()
    report["sig"] = sign(OTHER, rep.DOMAIN, report["body"])
    with pytest.raises(ReportError, match="forged"):
        rep.check(report, NOW)
    with pytest.raises(ReportError, match="only the auditor"):
        rep.sign_report(signed()["body"], OTHER)


def test_a_signature_for_another_document_kind_is_refused() -> None:
    report = signed()
    report["sig"] = sign(CLIENT, b"truecloud receipt v1\x00", report["body"])
    with pytest.raises(ReportError, match="forged"):
        rep.check(report, NOW)


def test_a_report_from_the_future_is_refused() -> None:
    with pytest.raises(ReportError, match="future"):
        rep.check(signed(at=NOW + 3600), NOW)


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "guess"}, {"checked": 0}, {"failed": 17}, {"failed": -1}, {"lease": ""},
        {"provider": CLIENT.public_key.hex()}, {"format": "truecloud-audit/0"},
        {"round": "1"}, {"checked": 2**40}, {"extra": True},
    ],
)  # fmt: skip
def test_malformed_reports_are_refused(change: dict[str, Any]) -> None:
    report = copy.deepcopy(signed())
    report["body"].update(change)
    report["sig"] = sign(CLIENT, rep.DOMAIN, report["body"])
    with pytest.raises(ReportError):
        rep.check(report, NOW)


@pytest.mark.parametrize("bad", [None, [], {}, {"body": {}, "sig": "00"}, {"body": 1, "sig": 2}])
def test_garbage_is_refused(bad: object) -> None:
    with pytest.raises(ReportError):
        rep.check(bad, NOW)


def test_an_oversized_report_is_refused() -> None:
    report = signed()
    report["sig"] = "ab" * 1100
    with pytest.raises(ReportError, match="at most"):
        rep.check(report, NOW)


def test_read_challenges_catch_dropped_and_altered_blocks() -> None:
    log = BlockLog()
    for block in range(100):
        log.wrote(block, bytes([block]) * 512)
    rng = random.Random(7)
    picked = log.challenge(rng, 16)
    assert len(picked) == 16 and picked == sorted(set(picked))
    answers: dict[int, bytes | None] = {b: bytes([b]) * 512 for b in picked}
    assert log.judge(answers) == (16, 0)
    answers[picked[0]] = None
    answers[picked[1]] = b"\x00" * 512
    answers[10_000] = b"never written"
    assert log.judge(answers) == (16, 2)


def test_the_newest_write_wins_and_the_log_is_bounded() -> None:
    log = BlockLog(capacity=3)
    log.wrote(1, b"old")
    log.wrote(1, b"new")
    assert log.judge({1: b"new"}) == (1, 0)
    for block in range(2, 6):
        log.wrote(block, b"x")
    assert len(log) == 3
    assert log.judge({1: b"new"}) == (0, 0)
    assert log.challenge(random.Random(1), 10) == [3, 4, 5]
    with pytest.raises(ValueError):
        BlockLog(capacity=0)
