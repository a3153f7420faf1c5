"""Fuzz issue 6's signed JSON documents: policy documents, receipts, audit reports, ledger lines.

    .venv/bin/python fuzz/fuzz_documents.py -runs=50000 [libFuzzer flags] [CORPUS_DIR ...]

The first input byte picks the document kind, the second the shape (fuzz/README.md):

0. raw bytes handed to the parser;
1. a valid signed document's bytes with a few bytes overwritten, inserted or cut: it may be
   accepted only if it still parses to exactly the same JSON value;
2. a document built from the input (any field may be any JSON value) and *validly signed*,
   so the field checks behind the signature run; the parser must accept it or refuse it with
   its own error.

Any other exception is a crash and ends the run with a non-zero exit.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import atheris
from fuzzing import mutated

with atheris.instrument_imports():
    from rms import policydoc
    from rms.audit import report as rep
    from rms.identity import NodeIdentity
    from rms.ledger import receipt as rcpt
    from rms.ledger.canonical import DocumentError, canonical, sign

KEY = NodeIdentity.from_seed(b"fuzz-doc" * 4)
PEER = NodeIdentity.from_seed(b"fuzz-peer-seed".ljust(32, b"."))  # a fixed 32-byte seed
TRUST = policydoc.PolicyTrust(frozenset({KEY.public_key}), 1)
NOW = 1_700_000_000
POLICY = json.loads(policydoc.signed_document({}, 3, "t", [KEY]))
RECEIPT_BODY = rcpt.make_body(KEY.public_key, PEER.public_key, "storage", amount=10,
                              period=(NOW, NOW + 60), lease="vol", serial=1)  # fmt: skip
RECEIPT = {"body": RECEIPT_BODY, "provider_sig": rcpt.sign_as(RECEIPT_BODY, KEY)[1],
           "consumer_sig": rcpt.sign_as(RECEIPT_BODY, PEER)[1]}  # fmt: skip
REPORT_BODY = rep.make_body(KEY.public_key, PEER.public_key, "vol", round_=1, at=NOW,
                            kind="read", checked=16, failed=0)  # fmt: skip
REPORT = rep.sign_report(REPORT_BODY, KEY)


def check_policy(data: bytes) -> None:
    policydoc.check(data, TRUST)


def check_receipt(data: bytes) -> None:
    rcpt.check(json.loads(data))


def check_report(data: bytes) -> None:
    rep.check(json.loads(data), NOW)


KINDS: list[tuple[dict[str, Any], Callable[[bytes], None], bytes, str]] = [
    (POLICY, check_policy, policydoc.DOMAIN, "policy"),
    (RECEIPT, check_receipt, rcpt.DOMAIN, "receipt"),
    (REPORT, check_report, rep.DOMAIN, "report"),
]


def refused(check: Callable[[bytes], None], data: bytes) -> bool:
    """True when refused with the parser's own error (or not JSON at all)."""
    try:
        check(data)
    except (DocumentError, ValueError, RecursionError):
        return True
    return False


def leaf(fdp: atheris.FuzzedDataProvider) -> object:
    choice = fdp.ConsumeIntInRange(0, 5)
    if choice == 0:
        return None
    if choice == 1:
        return fdp.ConsumeBool()
    if choice == 2:
        return fdp.ConsumeIntInRange(-(2**64), 2**64)
    if choice == 3:
        return fdp.ConsumeRegularFloat()
    if choice == 4:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 70))
    return [leaf(fdp) for _ in range(fdp.ConsumeIntInRange(0, 3))]


def signed_from_input(fdp: atheris.FuzzedDataProvider, kind: int) -> bytes:
    """A document of this kind whose body fields come from the input, validly signed."""
    template, _, domain, _ = KINDS[kind]
    body = dict(template["body"]) if "body" in template else dict(template)
    body.pop("signatures", None)
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        body[fdp.PickValueInList([*sorted(body), "extra"])] = leaf(fdp)
    try:
        sig = sign(KEY, domain, body)
    except DocumentError:
        return canonical(None)  # not encodable (a float NaN cannot happen; kept for safety)
    if kind == 0:
        return canonical({**body, "signatures": [{"key": KEY.public_key.hex(), "sig": sig}]})
    if kind == 1:
        return canonical({"body": body, "provider_sig": sig, "consumer_sig": sig})
    return canonical({"body": body, "sig": sig})


def test_one_input(data: bytes) -> None:
    """libFuzzer's entry point."""
    fdp = atheris.FuzzedDataProvider(data)
    kind = fdp.ConsumeIntInRange(0, len(KINDS) - 1)
    shape = fdp.ConsumeIntInRange(0, 2)
    template, check, _, name = KINDS[kind]
    if shape == 0:
        refused(check, fdp.ConsumeBytes(fdp.remaining_bytes()))
        return
    if shape == 1:
        original = canonical(template)
        candidate = mutated(fdp, original)
        if not refused(check, candidate) and _parsed(candidate) != template:
            raise RuntimeError(f"a mutated {name} was accepted: {candidate!r}")
        return
    refused(check, signed_from_input(fdp, kind))


def _parsed(data: bytes) -> object:
    try:
        return json.loads(data)
    except ValueError:
        return None


def main() -> None:
    """Run libFuzzer over `test_one_input` with the command line's flags."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
