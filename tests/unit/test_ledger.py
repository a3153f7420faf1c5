"""Receipts signed by both parties, and the hash-chain ledger that keeps them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from rms.cli.status import render_ledger
from rms.identity import NodeIdentity
from rms.ledger import receipt as rcpt
from rms.ledger.chain import Ledger, LedgerError, check_head, entry_hash, replay
from rms.ledger.receipt import ReceiptError
from rms.ledger.store import HEAD_NAME, LEDGER_NAME, LedgerBusy, LedgerStore

ME, PEER, OTHER, THIRD = (NodeIdentity.from_seed(bytes([i]) * 32) for i in (11, 12, 13, 14))
HOUR = 3600


def receipt(
    provider: NodeIdentity = ME, consumer: NodeIdentity = PEER, serial: int = 1, **over: Any
) -> dict[str, Any]:
    body = rcpt.make_body(
        provider.public_key, consumer.public_key, "storage",
        amount=8 * 2**30 * HOUR, period=(1_763_769_600, 1_763_769_600 + HOUR),
        lease="vol-3", serial=serial,
    )  # fmt: skip
    body.update(over)
    return {
        "body": body,
        "provider_sig": rcpt.sign_as(body, provider)[1],
        "consumer_sig": rcpt.sign_as(body, consumer)[1],
    }


def test_a_receipt_signed_by_both_verifies() -> None:
    r = rcpt.check(receipt())
    assert r.provider == ME.public_key and r.consumer == PEER.public_key
    assert r.role_of(ME.public_key) == "provider" and r.role_of(OTHER.public_key) is None


def test_an_altered_amount_is_refused() -> None:
    signed = receipt()
    signed["body"]["amount"] += 1
    with pytest.raises(ReceiptError, match="forged or altered"):
        rcpt.check(signed)


def test_one_party_cannot_sign_for_both() -> None:
    signed = receipt()
    signed["consumer_sig"] = rcpt.sign_as(signed["body"], ME)[1]
    with pytest.raises(ReceiptError, match="consumer's signature"):
        rcpt.check(signed)


def test_a_third_party_cannot_sign_as_a_party() -> None:
    with pytest.raises(ReceiptError, match="neither"):
        rcpt.sign_as(receipt()["body"], OTHER)


def test_swapped_signatures_are_refused() -> None:
    signed = receipt()
    signed["provider_sig"], signed["consumer_sig"] = signed["consumer_sig"], signed["provider_sig"]
    with pytest.raises(ReceiptError):
        rcpt.check(signed)


@pytest.mark.parametrize(
    "change",
    [
        {"resource": "bandwidth"},
        {"amount": -1},
        {"amount": 2**63},
        {"amount": 1.5},
        {"end": 1_763_769_600},
        {"end": 1_763_769_600 + 32 * 86400},
        {"lease": ""},
        {"lease": "x" * 200},
        {"format": "truecloud-receipt/2"},
        {"serial": True},
        {"provider": "00" * 31},
        {"extra": 1},
    ],
)
def test_malformed_bodies_are_refused(change: dict[str, Any]) -> None:
    body = copy.deepcopy(receipt()["body"])
    body.update(change)
    with pytest.raises(ReceiptError):
        rcpt.check_body(body)


def test_a_receipt_to_oneself_is_refused() -> None:
    with pytest.raises(ReceiptError, match="itself"):
        rcpt.make_body(ME.public_key, ME.public_key, "cpu", amount=1, period=(0, 1), lease="l",
                       serial=0)  # fmt: skip


@pytest.mark.parametrize("signed", [None, [], {"body": {}}, {"body": 1, "a": 2}, "receipt"])
def test_malformed_receipts_are_refused(signed: object) -> None:
    with pytest.raises(ReceiptError):
        rcpt.check(signed)


def test_an_oversized_receipt_is_refused() -> None:
    signed = receipt()
    signed["body"]["lease"] = "é" * 128  # within 128 characters, but padded beyond 4 KiB below
    signed["provider_sig"] = "00" * 2100
    with pytest.raises(ReceiptError):
        rcpt.check(signed)


def chain(n: int = 4) -> tuple[Ledger, list[dict[str, Any]]]:
    ledger, entries = Ledger(ME.public_key), []
    for i in range(n):
        provider, consumer = (ME, PEER) if i % 2 == 0 else (OTHER, ME)
        entries.append(ledger.append(receipt(provider, consumer, serial=i), now=1000 + i))
    return ledger, entries


def test_the_chain_replays_and_totals_add_up() -> None:
    ledger, entries = chain()
    again = replay(ME.public_key, json.loads(json.dumps(entries)))
    assert again.head_hash == ledger.head_hash
    hour = 8 * 2**30 * HOUR
    assert ledger.totals()["provided"]["storage"] == 2 * hour
    assert ledger.totals()["used"]["storage"] == 2 * hour
    check_head(again, ledger.head(ME))


def test_a_replayed_receipt_is_refused() -> None:
    ledger, _ = chain(1)
    with pytest.raises(LedgerError, match="replayed"):
        ledger.append(receipt(serial=0), now=5)


def test_a_receipt_the_node_is_not_party_to_is_refused() -> None:
    with pytest.raises(LedgerError, match="neither"):
        Ledger(ME.public_key).append(receipt(OTHER, THIRD), now=5)


def test_an_altered_entry_is_found() -> None:
    entries = copy.deepcopy(chain()[1])
    entries[1]["recorded_at"] += 1
    with pytest.raises(LedgerError, match=r"entry 1: .*altered") as e:
        replay(ME.public_key, entries)
    assert e.value.index == 1


def test_an_altered_receipt_with_a_recomputed_hash_is_found() -> None:
    entries = copy.deepcopy(chain()[1])
    entries[2]["receipt"]["body"]["amount"] = 1
    entries[2]["hash"] = entry_hash(entries[2]).hex()
    with pytest.raises(LedgerError, match="entry 2"):
        replay(ME.public_key, entries)


def test_a_removed_entry_is_found() -> None:
    entries = copy.deepcopy(chain()[1])
    del entries[1]
    with pytest.raises(LedgerError, match=r"entry 1: .*removed"):
        replay(ME.public_key, entries)


def test_reordered_entries_are_found() -> None:
    entries = copy.deepcopy(chain()[1])
    entries[1], entries[2] = entries[2], entries[1]
    with pytest.raises(LedgerError, match="reordered"):
        replay(ME.public_key, entries)


def test_a_truncated_tail_is_found_by_the_head() -> None:
    full, entries = chain()
    head = full.head(ME)
    cut = replay(ME.public_key, entries[:3])
    with pytest.raises(LedgerError, match="truncated"):
        check_head(cut, head)


def test_a_forged_head_is_refused() -> None:
    full, _ = chain()
    forged = full.head(OTHER)
    with pytest.raises(LedgerError, match="forged"):
        check_head(full, forged)
    head = full.head(ME)
    head["count"] = 9
    with pytest.raises(LedgerError, match="forged"):
        check_head(full, head)
    for bad in (None, {}, {"count": 1, "hash": "x", "node": "y", "sig": "z"}):
        with pytest.raises(LedgerError):
            check_head(full, bad)


def test_entries_not_objects_are_refused() -> None:
    for bad in ([1], ["x"], [{"index": 0}]):
        with pytest.raises(LedgerError, match="entry 0"):
            replay(ME.public_key, bad)


def store_with(tmp_path: Path, n: int) -> LedgerStore:
    store = LedgerStore(tmp_path, ME)
    for i in range(n):
        store.record(receipt(serial=i), now=100 + i)
    return store


def test_the_store_reloads_a_verified_ledger(tmp_path: Path) -> None:
    store_with(tmp_path, 3)
    again = LedgerStore(tmp_path, ME)
    assert again.problem is None and again.ledger.count == 3
    assert [e["index"] for e in again.page(1, 5)] == [1, 2]  # type: ignore[index]
    assert again.page(7, 5) == []
    assert (tmp_path / LEDGER_NAME).stat().st_mode & 0o777 == 0o600


def edit_lines(tmp_path: Path, change: Any) -> None:
    path = tmp_path / LEDGER_NAME
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(change(lines)))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda ls: ls[:2], "truncated"),
        (lambda ls: [ls[0], ls[2]], "removed"),
        (lambda ls: [ls[1], ls[0], ls[2]], "reordered"),
        (lambda ls: [ls[0], ls[1].replace(b'"recorded_at":101', b'"recorded_at":7'), ls[2]],
         "altered"),
        (lambda ls: [*ls[:2], ls[2][:-1]], "cut short"),
        (lambda ls: [*ls, b"{not json\n"], "not JSON"),
    ],
)  # fmt: skip
def test_an_altered_ledger_file_is_reported_and_frozen(
    tmp_path: Path, change: Any, reason: str
) -> None:
    store_with(tmp_path, 3)
    edit_lines(tmp_path, change)
    again = LedgerStore(tmp_path, ME)
    assert again.problem is not None and reason in again.problem
    assert again.summary()["verified"] is False
    with pytest.raises(LedgerError, match="nothing is recorded"):
        again.record(receipt(serial=9), now=200)


def test_a_missing_head_is_reported(tmp_path: Path) -> None:
    store_with(tmp_path, 1)
    (tmp_path / HEAD_NAME).unlink()
    assert "missing" in str(LedgerStore(tmp_path, ME).problem)


def test_the_store_signs_only_as_a_party(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path, ME)
    body = receipt()["body"]
    assert store.sign(body)["role"] == "provider"
    with pytest.raises(ReceiptError):
        store.sign(receipt(OTHER, THIRD)["body"])
    with pytest.raises(ReceiptError):
        store.sign([1])


@pytest.mark.parametrize("spelling", [str.upper, lambda s: s[:10] + " " + s[11:]])
def test_a_signature_has_one_spelling(spelling: Any) -> None:
    signed = receipt()
    signed["consumer_sig"] = spelling(signed["consumer_sig"])
    with pytest.raises(ReceiptError, match="lower-case hex"):
        rcpt.check(signed)


def test_rms_status_renders_the_ledger(tmp_path: Path) -> None:
    store = store_with(tmp_path, 2)
    lines = render_ledger(store.summary())
    assert lines[0] == "  2 receipts; the ledger verifies"
    assert lines[1].startswith("  provided  16.00 GiB-hours")
    odd = render_ledger({"verified": False, "problem": "x", "totals": "junk"})
    assert odd[0] == "  0 receipts; the ledger does not verify: x"


def test_until_loaded_the_store_is_busy_not_wrong(tmp_path: Path) -> None:
    store_with(tmp_path, 2)
    lazy = LedgerStore(tmp_path, ME, load=False)
    assert lazy.summary()["verified"] is None and lazy.page(0, 5) == []
    with pytest.raises(LedgerBusy):
        lazy.record(receipt(serial=7), now=300)
    lazy.load()
    assert lazy.summary()["verified"] is True and lazy.ledger.count == 2
    assert lazy.record(receipt(serial=7), now=300)["index"] == 2
