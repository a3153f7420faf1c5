"""Signed audit reports: what one client found when it checked one provider.

A report is the auditor's signed statement about one round of checks of one lease::

    {"body": {"format": "truecloud-audit/1", "auditor": "<hex key>", "provider": "<hex key>",
              "lease": "vol-3", "round": 17, "at": 1763769600, "kind": "read",
              "checked": 16, "failed": 0},
     "sig": "<hex>"}

`kind` is `read` (read challenges: blocks the client wrote, read back and compared with the
digests it kept) or `scrub` (a ZFS scrub's checksum errors on that provider's vdev, `checked`
being the blocks scrubbed, capped). Signed under `truecloud audit v1`; at most 2 KiB so it fits
a DHT value.

Read challenges (`BlockLog`): the client keeps the SHA-256 of each block it wrote to a
provider's volume (latest write wins; a bounded number of blocks, the oldest forgotten first).
Each audit round it picks blocks at random, reads them back and compares. A provider that
dropped a fraction f of the writes fails a challenge of k blocks with probability
1 - (1 - f)^k: with k = 16 and f = 10 % that is 81 % a round, so a few rounds of several
independent clients catch it (docs/accounting.md). The caller reads the blocks and passes a
seeded `random.Random`.
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rms.ledger import canonical as cj
from rms.wire.envelope import Signer

FORMAT = "truecloud-audit/1"
DOMAIN = b"truecloud audit v1\x00"
KINDS = ("read", "scrub")
MAX_REPORT_BYTES = 2048
MAX_CHECKED = 2**32
FUTURE_SLACK_S = 300  # reports dated further ahead than this are refused
BODY_KEYS = {"format", "auditor", "provider", "lease", "round", "at", "kind", "checked", "failed"}


class ReportError(cj.DocumentError):
    """A report that is malformed, oversized, forged or from the future."""


@dataclass(frozen=True, slots=True)
class AuditReport:
    """A verified report."""

    auditor: bytes
    provider: bytes
    lease: str
    round: int
    at: int
    kind: str
    checked: int
    failed: int
    signed: dict[str, Any]

    @property
    def passed(self) -> bool:
        """Whether every check held."""
        return self.failed == 0


def make_body(
    auditor: bytes, provider: bytes, lease: str, *, round_: int, at: int, kind: str,
    checked: int, failed: int,
) -> dict[str, Any]:  # fmt: skip
    """A report body, checked as a receiver checks it."""
    body = {
        "format": FORMAT, "auditor": auditor.hex(), "provider": provider.hex(), "lease": lease,
        "round": round_, "at": at, "kind": kind, "checked": checked, "failed": failed,
    }  # fmt: skip
    _fields(body)
    return body


def sign_report(body: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """The signed report; the signer must be the body's auditor."""
    auditor, _ = _fields(body)
    if auditor != signer.public_key:
        raise ReportError("only the auditor named in a report may sign it")
    return {"body": body, "sig": cj.sign(signer, DOMAIN, body)}


def check(signed: object, now: float) -> AuditReport:
    """Verify a signed report received from anyone (a local CFS, the DHT)."""
    if not isinstance(signed, dict):
        raise ReportError("a report must be an object")
    try:
        cj.exact_keys(signed, {"body", "sig"}, "report")
        if len(cj.canonical(signed)) > MAX_REPORT_BYTES:
            raise ReportError(f"a report is at most {MAX_REPORT_BYTES} bytes")
        auditor, provider = _fields(signed["body"])
        sig = cj.hex_bytes(signed["sig"], cj.SIG_BYTES, "sig")
    except ReportError:
        raise
    except cj.DocumentError as e:
        raise ReportError(str(e)) from None
    body = signed["body"]
    if not cj.verify(DOMAIN, body, auditor, sig):
        raise ReportError("the auditor's signature does not hold: forged or altered")
    if body["at"] > now + FUTURE_SLACK_S:
        raise ReportError("the report is dated in the future")
    return AuditReport(
        auditor, provider, body["lease"], body["round"], body["at"], body["kind"],
        body["checked"], body["failed"], signed,
    )  # fmt: skip


def _fields(body: object) -> tuple[bytes, bytes]:
    if not isinstance(body, dict):
        raise ReportError("a report body must be an object")
    try:
        cj.exact_keys(body, BODY_KEYS, "report body")
        auditor = cj.hex_bytes(body["auditor"], cj.KEY_BYTES, "auditor")
        provider = cj.hex_bytes(body["provider"], cj.KEY_BYTES, "provider")
        lease = cj.text(body["lease"], "lease", 128)
        cj.whole(body["round"], "round")
        cj.whole(body["at"], "at", high=2**40)
        checked = cj.whole(body["checked"], "checked", high=MAX_CHECKED)
        failed = cj.whole(body["failed"], "failed", high=MAX_CHECKED)
    except cj.DocumentError as e:
        raise ReportError(str(e)) from None
    if body["format"] != FORMAT or body["kind"] not in KINDS:
        raise ReportError(f"format must be {FORMAT} and kind one of {', '.join(KINDS)}")
    if auditor == provider:
        raise ReportError("a provider cannot audit itself")
    if not lease or checked == 0 or failed > checked:
        raise ReportError("a report names a lease and 0 <= failed <= checked, checked >= 1")
    return auditor, provider


DEFAULT_CAPACITY = 65536  # blocks remembered per volume (2 MiB of digests)


class BlockLog:
    """Digests of the blocks a client wrote to one volume."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("a block log remembers at least one block")
        self._capacity = capacity
        self._digests: OrderedDict[int, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._digests)

    def blocks(self) -> list[int]:
        """The remembered blocks, oldest write first."""
        return list(self._digests)

    def wrote(self, block: int, data: bytes) -> None:
        """Remember what was written at `block` (the newest write replaces older ones)."""
        self._digests.pop(block, None)
        self._digests[block] = hashlib.sha256(data).digest()
        while len(self._digests) > self._capacity:
            self._digests.popitem(last=False)

    def challenge(self, rng: random.Random, count: int) -> list[int]:
        """Up to `count` distinct remembered blocks, chosen at random, in ascending order."""
        blocks = list(self._digests)
        return sorted(rng.sample(blocks, min(count, len(blocks))))

    def judge(self, answers: Mapping[int, bytes | None]) -> tuple[int, int]:
        """(checked, failed) for the blocks read back; a block not read back has failed."""
        checked = failed = 0
        for block, data in answers.items():
            expected = self._digests.get(block)
            if expected is None:
                continue  # not a block we challenged: ignore rather than blame
            checked += 1
            if data is None or hashlib.sha256(data).digest() != expected:
                failed += 1
        return checked, failed
