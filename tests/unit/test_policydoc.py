"""The signed policy document: accepted only with enough trusted, valid signatures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rms import policydoc
from rms.identity import NodeIdentity
from rms.ledger.canonical import sign
from rms.policy import DEFAULT, Policy
from rms.policydoc import PolicyDocError, PolicyTrust

KEYS = [NodeIdentity.from_seed(bytes([i]) * 32) for i in range(1, 5)]
TRUST = PolicyTrust(frozenset(k.public_key for k in KEYS[:3]), threshold=2)


def document(version: int = 3, signers: list[NodeIdentity] = KEYS[:2], **fields: Any) -> bytes:
    return policydoc.signed_document(fields, version, "2026-11-22T00:00:00Z", list(signers))


def tamper(data: bytes, change: Any) -> bytes:
    doc = json.loads(data)
    change(doc)
    return json.dumps(doc).encode()


def test_a_document_signed_by_the_threshold_is_accepted() -> None:
    got = policydoc.check(document(entitlement_ratio=0.45, vpn_capacity=12), TRUST)
    assert got.version == 3
    assert got.policy == Policy(entitlement_ratio=0.45, vpn_capacity=12)
    assert got.signers == {KEYS[0].public_key, KEYS[1].public_key}


def test_the_default_policy_round_trips_unchanged() -> None:
    assert policydoc.check(document(), TRUST).policy == DEFAULT


def test_an_unsigned_document_is_refused() -> None:
    with pytest.raises(PolicyDocError, match="unsigned"):
        policydoc.check(document(signers=[]), TRUST)


def test_too_few_trusted_signatures_are_refused() -> None:
    with pytest.raises(PolicyDocError, match="1 of the 2"):
        policydoc.check(document(signers=[KEYS[0]]), TRUST)


def test_signatures_by_untrusted_keys_do_not_count() -> None:
    with pytest.raises(PolicyDocError, match="1 of the 2"):
        policydoc.check(document(signers=[KEYS[0], KEYS[3]]), TRUST)


def test_the_same_key_twice_counts_once() -> None:
    data = document(signers=[KEYS[0]])
    doubled = tamper(data, lambda d: d["signatures"].append(d["signatures"][0]))
    with pytest.raises(PolicyDocError, match="1 of the 2"):
        policydoc.check(doubled, TRUST)


def test_an_altered_policy_breaks_the_signatures() -> None:
    def raise_ratio(d: dict[str, Any]) -> None:
        d["policy"]["entitlement_ratio"] = 0.5

    with pytest.raises(PolicyDocError, match="forged or altered"):
        policydoc.check(tamper(document(), raise_ratio), TRUST)


def test_an_altered_version_breaks_the_signatures() -> None:
    with pytest.raises(PolicyDocError, match="forged or altered"):
        policydoc.check(tamper(document(), lambda d: d.update(version=99)), TRUST)


def test_a_signature_claiming_a_trusted_key_but_made_by_another_is_refused() -> None:
    data = document(signers=[KEYS[0], KEYS[3]])
    forged = tamper(data, lambda d: d["signatures"][1].update(key=KEYS[1].public_key.hex()))
    with pytest.raises(PolicyDocError, match="forged"):
        policydoc.check(forged, TRUST)


def test_a_lower_version_than_the_accepted_one_is_refused() -> None:
    with pytest.raises(PolicyDocError, match="older"):
        policydoc.check(document(version=3), TRUST, min_version=4)
    assert policydoc.check(document(version=4), TRUST, min_version=4).version == 4


def test_a_document_cannot_replay_as_another_kind_of_signed_object() -> None:
    data = document(signers=[])
    body, _ = policydoc.parse(data)
    wrong = [{"key": k.public_key.hex(), "sig": sign(k, b"other\x00", body)} for k in KEYS[:2]]
    with pytest.raises(PolicyDocError, match="forged"):
        policydoc.check(tamper(data, lambda d: d.update(signatures=wrong)), TRUST)


@pytest.mark.parametrize(
    "fields",
    [
        {"entitlement_ratio": 0.9},  # out of [1/3, 1/2]
        {"vpn_capacity": 8.5},  # not a whole number
        {"vpn_capacity": True},
        {"entitlement_ratio": "0.4"},
        {"no_such_field": 1},
        {"probation_factor": 2.0},
        {"dht_puzzle_bits": 2**60},
    ],
)
def test_bad_policy_values_are_refused_even_when_signed(fields: dict[str, Any]) -> None:
    policy = policydoc.policy_fields(DEFAULT)
    body = {"format": policydoc.FORMAT, "version": 5, "issued_at": "x", "policy": policy}
    body["policy"] = {**policy, **fields}
    doc: dict[str, Any] = {**body, "signatures": []}
    for key in KEYS[:2]:
        doc = policydoc.add_signature(doc, key)
    with pytest.raises(PolicyDocError):
        policydoc.check(policydoc.encode(doc), TRUST)


def test_fields_left_out_keep_their_defaults() -> None:
    body = {"format": policydoc.FORMAT, "version": 2, "issued_at": "", "policy": {"vpn_max": 3}}
    doc: dict[str, Any] = {**body, "signatures": []}
    for key in KEYS[:2]:
        doc = policydoc.add_signature(doc, key)
    assert policydoc.check(policydoc.encode(doc), TRUST).policy == Policy(vpn_max=3)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        b"[]",
        b"NaN",
        b'{"format": "truecloud-policy/1"}',
        b"[" * 100000,
        b'{"format":"truecloud-policy/1","version":1,"issued_at":"","policy":{},"signatures":5}',
        b'{"format":"truecloud-policy/1","version":1,"issued_at":"","policy":{},"signatures":[{}]}',
        b'{"format":"truecloud-policy/1","version":1,"issued_at":"","policy":{},"signatures":'
        b'[{"key":"zz","sig":"00"}]}',
    ],
)
def test_malformed_documents_are_refused(data: bytes) -> None:
    with pytest.raises(PolicyDocError):
        policydoc.check(data, TRUST)


def test_an_oversized_document_is_refused() -> None:
    data = document()
    padded = data[:-2] + b" " * policydoc.MAX_DOCUMENT_BYTES + data[-2:]
    with pytest.raises(PolicyDocError, match="larger"):
        policydoc.check(padded, TRUST)


def test_too_many_signatures_are_refused() -> None:
    sig = json.loads(document())["signatures"][0]
    many = tamper(document(), lambda d: d.update(signatures=[sig] * 17))
    with pytest.raises(PolicyDocError, match="at most"):
        policydoc.check(many, TRUST)


def test_wrong_format_and_bad_version_are_refused() -> None:
    for change in ({"format": "truecloud-policy/2"}, {"version": 0}, {"version": "3"}):
        body = {"format": policydoc.FORMAT, "version": 2, "issued_at": "", "policy": {}}
        doc: dict[str, Any] = {**body, **change, "signatures": []}
        for key in KEYS[:2]:
            doc = policydoc.add_signature(doc, key)
        with pytest.raises(PolicyDocError):
            policydoc.check(policydoc.encode(doc), TRUST)


def test_trust_refuses_bad_keys_and_thresholds() -> None:
    with pytest.raises(ValueError):
        PolicyTrust.from_hex(["abcd"], 1)
    with pytest.raises(ValueError):
        PolicyTrust(frozenset({KEYS[0].public_key}), threshold=2)
    with pytest.raises(ValueError):
        PolicyTrust(frozenset({KEYS[0].public_key}), threshold=0)


def test_trusted_keys_from_the_config_may_be_upper_case() -> None:
    upper = [k.public_key.hex().upper() for k in KEYS[:3]]
    assert PolicyTrust.from_hex(upper, 2) == TRUST
