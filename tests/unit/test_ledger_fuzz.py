"""Every signed-document parser of issue 6 takes arbitrary input and either accepts it or
raises its own error: never another exception (STYLE.md 4)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rms import policydoc
from rms.audit import report as rep
from rms.entitlement.availability import HistoryError, UptimeHistory
from rms.identity import NodeIdentity
from rms.ledger import receipt as rcpt
from rms.ledger.canonical import DocumentError
from rms.ledger.chain import Ledger, LedgerError, check_head, replay

KEY = NodeIdentity.from_seed(b"\x05" * 32)
TRUST = policydoc.PolicyTrust(frozenset({KEY.public_key}), 1)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def near(template: dict[str, Any]) -> Any:
    """Objects shaped like a real document, with any field swapped for junk."""
    return st.fixed_dictionaries({k: st.one_of(st.just(v), JSON) for k, v in template.items()})


RECEIPT_BODY = rcpt.make_body(KEY.public_key, bytes(32), "storage", amount=1, period=(0, 1),
                              lease="l", serial=0)  # fmt: skip
REPORT_BODY = rep.make_body(bytes(32), KEY.public_key, "l", round_=0, at=0, kind="read",
                            checked=1, failed=0)  # fmt: skip


def refused(call: Callable[[], object]) -> bool:
    """True when the parser refused with its own error; any other exception fails the test."""
    try:
        call()
    except (DocumentError, HistoryError):
        return True
    return False


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512) | JSON.map(lambda v: json.dumps(v).encode()))
def test_policy_documents(data: bytes) -> None:
    assert refused(lambda: policydoc.check(data, TRUST))  # junk never carries a signature


@settings(max_examples=300, deadline=None)
@given(JSON | near({"body": RECEIPT_BODY, "provider_sig": "00" * 64, "consumer_sig": "x"}))
def test_receipts(value: object) -> None:
    assert refused(lambda: rcpt.check(value))


@settings(max_examples=300, deadline=None)
@given(JSON | near({"body": REPORT_BODY, "sig": "00" * 64}))
def test_audit_reports(value: object) -> None:
    assert refused(lambda: rep.check(value, 0))


@settings(max_examples=300, deadline=None)
@given(JSON | near(REPORT_BODY))
def test_report_bodies_given_to_sign(value: object) -> None:
    body = value if isinstance(value, dict) else {"body": value}
    signed = not refused(lambda: rep.sign_report(body, KEY))
    assert not signed or body.get("auditor") == KEY.public_key.hex()


@settings(max_examples=200, deadline=None)
@given(st.lists(JSON, min_size=1, max_size=3), JSON)
def test_ledger_entries_and_heads(entries: list[object], head: object) -> None:
    assert refused(lambda: replay(KEY.public_key, entries))
    assert refused(lambda: check_head(Ledger(KEY.public_key), head))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256) | JSON.map(lambda v: json.dumps(v).encode()))
def test_uptime_history(data: bytes) -> None:
    history: list[UptimeHistory] = []
    if not refused(lambda: history.append(UptimeHistory.from_json(data))):
        assert UptimeHistory.from_json(history[0].to_json()) == history[0]  # a stable reading


def test_the_errors_are_document_errors() -> None:
    for error in (policydoc.PolicyDocError, rcpt.ReceiptError, rep.ReportError, LedgerError):
        assert issubclass(error, DocumentError)
