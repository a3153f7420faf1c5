"""The signed policy document: `rms.policy.Policy` as a file every node verifies.

DESIGN.md: "Cloud-wide constants ... live in one signed policy document". The document is a
self-contained JSON file (so the component library can ship it as a TUF target)::

    {"format": "truecloud-policy/1", "version": 7, "issued_at": "2026-11-22T00:00:00Z",
     "policy": {"entitlement_ratio": 0.4, ...},
     "signatures": [{"key": "<ed25519 public key, hex>", "sig": "<hex>"}, ...]}

Each signature covers the canonical encoding of everything but `signatures`, under the
domain `truecloud policy v1`. A node accepts a document only when at least `threshold` of
its configured policy keys signed it, no signature is bad, the version is not lower than
the one it accepted last, and every field is one `Policy` knows with a value of its type.
Fields the document leaves out keep their defaults, so an older document still loads in a
newer RMS. Sans-IO: reading and keeping the file is the daemon's (rms.entitlement.service).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from math import isfinite
from typing import Any

from rms.ledger.canonical import (
    KEY_BYTES,
    SIG_BYTES,
    DocumentError,
    canonical,
    exact_keys,
    hex_bytes,
    parse_object,
    sign,
    text,
    verify,
    whole,
)
from rms.policy import Policy
from rms.wire.envelope import Signer

FORMAT = "truecloud-policy/1"
DOMAIN = b"truecloud policy v1\x00"
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_SIGNATURES = 16
BODY_FIELDS = {"format", "version", "issued_at", "policy"}


class PolicyDocError(DocumentError):
    """A policy document this node refuses; the message says why."""


@dataclass(frozen=True, slots=True)
class PolicyTrust:
    """Whom a node believes about policy: the cloud's policy keys and how many must sign."""

    keys: frozenset[bytes]
    threshold: int

    def __post_init__(self) -> None:
        if any(len(k) != KEY_BYTES for k in self.keys):
            raise ValueError("a policy key is a 32-byte ed25519 public key")
        if not 1 <= self.threshold <= max(1, len(self.keys)):
            raise ValueError("the threshold must lie in [1, number of policy keys]")

    @classmethod
    def from_hex(cls, keys: tuple[str, ...] | list[str], threshold: int) -> PolicyTrust:
        """From the config's hex strings; ValueError when one is not a key."""
        try:
            found = [hex_bytes(k.strip().lower(), KEY_BYTES, "policy key") for k in keys]
            return cls(frozenset(found), threshold)
        except DocumentError as e:
            raise ValueError(str(e)) from None


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    """A verified document: the policy, its version and who signed it."""

    version: int
    issued_at: str
    policy: Policy
    signers: frozenset[bytes]


def policy_fields(policy: Policy) -> dict[str, Any]:
    """Every field of a Policy, as JSON values."""
    return {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy)}


def make_body(policy: Policy, version: int, issued_at: str) -> dict[str, Any]:
    """The unsigned part of a document."""
    whole(version, "version", low=1)
    return {
        "format": FORMAT,
        "version": version,
        "issued_at": issued_at,
        "policy": policy_fields(policy),
    }


def add_signature(doc: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """The document with `signer`'s signature added (replacing an older one by the same key)."""
    body = {k: doc[k] for k in BODY_FIELDS}
    key = signer.public_key.hex()
    kept = [s for s in doc.get("signatures", []) if s.get("key") != key]
    return {**body, "signatures": [*kept, {"key": key, "sig": sign(signer, DOMAIN, body)}]}


def signed_document(
    overrides: dict[str, Any], version: int, issued_at: str, signers: list[Signer]
) -> bytes:
    """A whole document: the default policy with `overrides`, signed by each of `signers`."""
    policy = policy_from_fields({**policy_fields(Policy()), **overrides})
    doc: dict[str, Any] = {**make_body(policy, version, issued_at), "signatures": []}
    for signer in signers:
        doc = add_signature(doc, signer)
    return encode(doc)


def encode(doc: dict[str, Any]) -> bytes:
    """The file's bytes (canonical, with a final newline)."""
    return canonical(doc) + b"\n"


def parse(data: bytes) -> tuple[dict[str, Any], list[tuple[bytes, bytes]]]:
    """The body and (key, signature) pairs of a document; PolicyDocError when malformed."""
    try:
        doc = parse_object(data, MAX_DOCUMENT_BYTES, "policy document")
        exact_keys(doc, BODY_FIELDS | {"signatures"}, "policy document")
        raw = doc["signatures"]
        if not isinstance(raw, list) or len(raw) > MAX_SIGNATURES:
            raise PolicyDocError(f"signatures must be a list of at most {MAX_SIGNATURES}")
        pairs = [_signature(item) for item in raw]
    except PolicyDocError:
        raise
    except DocumentError as e:
        raise PolicyDocError(str(e)) from None
    return {k: doc[k] for k in BODY_FIELDS}, pairs


def _signature(item: object) -> tuple[bytes, bytes]:
    if not isinstance(item, dict) or set(item) != {"key", "sig"}:
        raise PolicyDocError('a signature must be {"key": …, "sig": …}')
    return hex_bytes(item["key"], KEY_BYTES, "signature key"), hex_bytes(
        item["sig"], SIG_BYTES, "signature"
    )


def check(data: bytes, trust: PolicyTrust, min_version: int = 0) -> PolicyDocument:
    """Verify a document against this node's trust and the last accepted version."""
    body, pairs = parse(data)
    if body["format"] != FORMAT:
        raise PolicyDocError(f"format is not {FORMAT}")
    if not pairs:
        raise PolicyDocError("the policy document is unsigned")
    signers: set[bytes] = set()
    for key, sig in pairs:
        if not verify(DOMAIN, body, key, sig):
            raise PolicyDocError(f"bad signature by key {key.hex()[:16]}…: forged or altered")
        if key in trust.keys:
            signers.add(key)
    if len(signers) < trust.threshold:
        raise PolicyDocError(
            f"signed by {len(signers)} of the {trust.threshold} trusted policy keys required"
        )
    try:
        version = whole(body["version"], "version", low=1)
        issued_at = text(body["issued_at"], "issued_at", 64)
    except DocumentError as e:
        raise PolicyDocError(str(e)) from None
    if version < min_version:
        raise PolicyDocError(f"version {version} is older than the accepted {min_version}")
    return PolicyDocument(
        version, issued_at, policy_from_fields(body["policy"]), frozenset(signers)
    )


def policy_from_fields(fields: object) -> Policy:
    """A Policy from a document's `policy` object: known fields, right types, valid values."""
    if not isinstance(fields, dict):
        raise PolicyDocError("policy must be an object")
    defaults = Policy()
    known = {f.name for f in dataclasses.fields(defaults)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise PolicyDocError(f"unknown policy field(s) {', '.join(unknown)}: update this node")
    values: dict[str, Any] = {
        name: _typed(name, getattr(defaults, name), v) for name, v in fields.items()
    }
    try:
        return Policy(**values)
    except (ValueError, TypeError) as e:
        raise PolicyDocError(f"policy values refused: {e}") from None


def _typed(name: str, default: object, value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyDocError(f"policy field {name} must be a number")
    if isinstance(default, int) and type(value) is not int:
        raise PolicyDocError(f"policy field {name} must be a whole number")
    if not isfinite(value) or abs(value) > 2**53:
        raise PolicyDocError(f"policy field {name} is out of range")
    return float(value) if isinstance(default, float) else value


def describe(doc: PolicyDocument) -> dict[str, Any]:
    """What `rms policy show|verify` and the status print about a document."""
    return {
        "version": doc.version,
        "issued_at": doc.issued_at,
        "signers": sorted(k.hex() for k in doc.signers),
        "policy": policy_fields(doc.policy),
    }
