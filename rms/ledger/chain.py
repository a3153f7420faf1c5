"""The node's ledger: a hash chain of receipts it is party to, and a signed head.

Each entry is `{"index": i, "prev": <hash of entry i-1>, "recorded_at": t, "receipt": {...},
"hash": h}` with `h = SHA-256("truecloud ledger v1\\0" + canonical(entry without "hash"))` and
the first `prev` all zeros. Changing, removing or reordering any entry breaks the chain at that
point. Cutting entries off the end leaves a valid shorter chain, so the node also signs the
head - `{"count": n, "hash": h}` under `truecloud ledger head v1` - and keeps it beside the
file: a ledger shorter than its head, or whose last hash differs, has been truncated or
rewritten. (The node itself, holding its key, could rewrite its own ledger; but it cannot invent
receipts, which carry the other party's signature, and every counterparty keeps its own copy.)
Sans-IO: `rms.ledger.store` reads and writes the files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rms.ledger import canonical as cj
from rms.ledger import receipt as rcpt
from rms.wire.envelope import Signer

ENTRY_DOMAIN = b"truecloud ledger v1\x00"
HEAD_DOMAIN = b"truecloud ledger head v1\x00"
GENESIS = bytes(32)
ENTRY_KEYS = {"index", "prev", "recorded_at", "receipt", "hash"}


class LedgerError(cj.DocumentError):
    """A ledger entry or head that does not hold; `index` is the first bad entry."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


def entry_hash(entry: dict[str, Any]) -> bytes:
    """The hash an entry must carry: over everything but its `hash` field."""
    unhashed = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(ENTRY_DOMAIN + cj.canonical(unhashed)).digest()


@dataclass
class Ledger:
    """A verified chain for one node (`owner`, its public key). Only what verification needs
    is held - count, last hash, receipt digests, totals - not the entries themselves (a year
    of hourly receipts would be hundreds of MB); `rms.ledger.store` reads those from the file."""

    owner: bytes
    count: int = 0
    head_hash: bytes = GENESIS
    digests: set[bytes] = field(default_factory=set)
    sums: dict[str, dict[str, int]] = field(
        default_factory=lambda: {r: dict.fromkeys(rcpt.RESOURCES, 0) for r in ("provided", "used")}
    )

    def append(self, signed: object, now: int) -> dict[str, Any]:
        """Verify a receipt this node is party to and chain it; returns the new entry."""
        r = rcpt.check(signed)
        if r.role_of(self.owner) is None:
            raise LedgerError("this node is neither the provider nor the consumer")
        if r.digest in self.digests:
            raise LedgerError("this receipt is already in the ledger (replayed)")
        entry: dict[str, Any] = {
            "index": self.count,
            "prev": self.head_hash.hex(),
            "recorded_at": now,
            "receipt": r.signed,
        }
        entry["hash"] = entry_hash(entry).hex()
        self._take(entry, r)
        return entry

    def _take(self, entry: dict[str, Any], r: rcpt.Receipt) -> None:
        self.count += 1
        self.head_hash = bytes.fromhex(entry["hash"])
        self.digests.add(r.digest)
        role = "provided" if r.role_of(self.owner) == "provider" else "used"
        self.sums[role][r.resource] += r.amount

    def head(self, signer: Signer) -> dict[str, Any]:
        """The signed head the store keeps beside the file."""
        body = {"count": self.count, "hash": self.head_hash.hex()}
        return {**body, "node": signer.public_key.hex(), "sig": cj.sign(signer, HEAD_DOMAIN, body)}

    def totals(self) -> dict[str, dict[str, int]]:
        """Sums of what this node provided and used, per resource."""
        return {role: dict(by_resource) for role, by_resource in self.sums.items()}


def replay(owner: bytes, entries: Iterable[object]) -> Ledger:
    """Rebuild and verify a ledger entry by entry; LedgerError names the first bad one."""
    ledger = Ledger(owner)
    for position, entry in enumerate(entries):
        try:
            checked, r = _check_entry(ledger, position, entry)
        except cj.DocumentError as e:
            raise LedgerError(f"entry {position}: {e}", position) from None
        ledger._take(checked, r)
    return ledger


def _check_entry(
    ledger: Ledger, position: int, entry: object
) -> tuple[dict[str, Any], rcpt.Receipt]:
    if not isinstance(entry, dict):
        raise LedgerError("not an object")
    cj.exact_keys(entry, ENTRY_KEYS, "entry")
    if cj.whole(entry["index"], "index") != position:
        raise LedgerError(f"index {entry['index']} where {position} belongs: reordered or removed")
    cj.whole(entry["recorded_at"], "recorded_at")
    if cj.hex_bytes(entry["prev"], 32, "prev") != ledger.head_hash:
        raise LedgerError("does not follow the entry before it: removed or reordered")
    if cj.hex_bytes(entry["hash"], 32, "hash") != entry_hash(entry):
        raise LedgerError("its hash does not match its content: altered")
    r = rcpt.check(entry["receipt"])
    if r.role_of(ledger.owner) is None:
        raise LedgerError("a receipt this node is not party to")
    if r.digest in ledger.digests:
        raise LedgerError("a receipt recorded twice")
    return entry, r


def check_head(ledger: Ledger, head: object) -> None:
    """Verify the signed head against the replayed ledger: detects truncation and rewrites."""
    if not isinstance(head, dict):
        raise LedgerError("the ledger head is not an object")
    try:
        cj.exact_keys(head, {"count", "hash", "node", "sig"}, "ledger head")
        body = {"count": cj.whole(head["count"], "count"), "hash": head["hash"]}
        node = cj.hex_bytes(head["node"], cj.KEY_BYTES, "node")
        sig = cj.hex_bytes(head["sig"], cj.SIG_BYTES, "sig")
    except cj.DocumentError as e:
        raise LedgerError(str(e)) from None
    if node != ledger.owner or not cj.verify(HEAD_DOMAIN, body, node, sig):
        raise LedgerError("the ledger head's signature does not hold: forged or altered")
    if body["count"] > ledger.count:
        have = ledger.count
        raise LedgerError(f"the head counts {body['count']} entries, the file {have}: truncated")
    if body["count"] < ledger.count:
        raise LedgerError("entries after the signed head: appended behind the node's back")
    if body["hash"] != ledger.head_hash.hex():
        raise LedgerError("the last entry is not the one the head signed: rewritten")
