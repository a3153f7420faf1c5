"""Ledger replay throughput against the raw signature checks it cannot avoid, in the same run.

    .venv/bin/python bench/ledger.py [--entries N] [--rounds R]

Every receipt carries two ed25519 signatures, so the least a node can spend verifying its
ledger on start is two `VerifyKey.verify()` calls per entry: that is the baseline. Ours parses
each JSON line, checks every field, recomputes the entry hash and the chain link, verifies
both signatures and the replay set (`rms.ledger.chain.replay`). ed25519 dominates, so the ratio
ours/baseline should stay >= 0.5. Rounds are interleaved and the best of each side counts. The
last line of output is one JSON object; the exit code never depends on the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from nacl.signing import VerifyKey
from wire import timed  # bench/wire.py: the same best-of timing, gc off

from rms.identity import NodeIdentity
from rms.ledger import receipt as rcpt
from rms.ledger.canonical import canonical
from rms.ledger.chain import Ledger, replay

GOAL = 0.5
ME = NodeIdentity.from_seed(b"bench-ledger-me-0123456789abcdef")
PEER = NodeIdentity.from_seed(b"bench-ledger-peer-123456789abcde")


def build(entries: int) -> list[bytes]:
    """The ledger file's lines for `entries` receipts this node provided."""
    ledger, lines = Ledger(ME.public_key), []
    for serial in range(entries):
        body = rcpt.make_body(ME.public_key, PEER.public_key, "storage", amount=serial + 1,
                              period=(1_700_000_000, 1_700_003_600), lease="vol-1",
                              serial=serial)  # fmt: skip
        signed = {"body": body, "provider_sig": rcpt.sign_as(body, ME)[1],
                  "consumer_sig": rcpt.sign_as(body, PEER)[1]}  # fmt: skip
        entry = ledger.append(signed, now=1_700_003_600)
        lines.append(json.dumps(entry, sort_keys=True, separators=(",", ":")).encode())
    return lines


def ours(lines: list[bytes]) -> int:
    """Replay the ledger from its lines."""
    return replay(ME.public_key, (json.loads(line) for line in lines)).count


def baseline(checks: list[tuple[bytes, bytes, bytes]]) -> int:
    """Only the two signature checks per entry."""
    for key, message, sig in checks:
        VerifyKey(key).verify(message, sig)
    return len(checks) // 2


def signature_checks(lines: list[bytes]) -> list[tuple[bytes, bytes, bytes]]:
    out = []
    for line in lines:
        signed = json.loads(line)["receipt"]
        message = rcpt.DOMAIN + canonical(signed["body"])
        out.append((ME.public_key, message, bytes.fromhex(signed["provider_sig"])))
        out.append((PEER.public_key, message, bytes.fromhex(signed["consumer_sig"])))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print a table and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    lines = build(args.entries)
    checks = signature_checks(lines)
    best: dict[str, float] = {"ours": 0.0, "baseline": 0.0}
    for _ in range(args.rounds):
        best["baseline"] = max(best["baseline"], timed(lambda: baseline(checks)))
        best["ours"] = max(best["ours"], timed(lambda: ours(lines)))
    ratio = best["ours"] / best["baseline"]
    figures: dict[str, Any] = {
        "bench": "ledger",
        "entries": args.entries,
        "replay_per_s": round(best["ours"], 1),
        "baseline_per_s": round(best["baseline"], 1),
        "ratio": round(ratio, 3),
        "goal": GOAL,
    }
    print(f"{'ledger replay':<26}{best['ours']:>12.0f} entries/s")
    print(f"{'baseline (2 verifies)':<26}{best['baseline']:>12.0f} entries/s")
    verdict = "meets" if ratio >= GOAL else "misses"
    print(f"{'ratio':<26}{ratio:>12.3f}  ({verdict} the {GOAL} goal)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
