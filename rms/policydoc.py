"""The signed policy document: `rms.policy.Policy` as a file every node verifies.

DESIGN.md: "Cloud-wide constants ... live in one signed policy document". The document is a
self-contained JSON file (so the component library can ship it as a TUF target)::

    {"format": "truecloud-policy/1", "version": 7, "issued_at": "2026-11-22T00:00:00Z",
     "expires_at": "2027-11-22T00:00:00Z",
     "policy": {"entitlement_ratio": 0.4, ...},
     "signatures": [{"key": "<ed25519 public key, hex>", "sig": "<hex>"}, ...]}

Each signature covers the canonical encoding of everything but `signatures`, under the
domain `truecloud policy v1`. A node accepts a document only when at least `threshold` of
its configured policy keys signed it, no signature is bad, the version is not lower than
the one it accepted last, and every field is one `Policy` knows with a value of its type.
Fields the document leaves out keep their defaults, so an older document still loads in a
newer RMS. `expires_at` is optional: a candidate past it is refused. `choose` is the node's
whole decision (which document is in force, which candidate to keep, what is wrong) from the
bytes of the kept and the candidate files. Sans-IO: reading and keeping the files is the
daemon's (rms.entitlement.state).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
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
OPTIONAL_FIELDS = {"expires_at"}
_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


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
    expires_at: str | None = None  # "YYYY-MM-DDTHH:MM:SSZ"; None: never expires
    body_digest: bytes = b""  # canonical body: two documents of one version must agree

    def expired(self, now: float) -> bool:
        """Whether the document's `expires_at` has passed at `now` (UNIX seconds)."""
        return self.expires_at is not None and now >= utc_seconds(self.expires_at)


def utc_seconds(value: str) -> float:
    """UNIX seconds of a "YYYY-MM-DDTHH:MM:SSZ" time; PolicyDocError when it is not one."""
    if not isinstance(value, str) or not _UTC.fullmatch(value):
        raise PolicyDocError("expires_at must be a UTC time like 2027-01-31T00:00:00Z")
    try:
        parsed = datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
        return parsed.replace(tzinfo=datetime.UTC).timestamp()
    except ValueError:
        raise PolicyDocError(f"expires_at {value!r} is not a valid date") from None


def policy_fields(policy: Policy) -> dict[str, Any]:
    """Every field of a Policy, as JSON values."""
    return {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy)}


def make_body(
    policy: Policy, version: int, issued_at: str, expires_at: str | None = None
) -> dict[str, Any]:
    """The unsigned part of a document (with `expires_at` when given)."""
    whole(version, "version", low=1)
    body = {
        "format": FORMAT,
        "version": version,
        "issued_at": issued_at,
        "policy": policy_fields(policy),
    }
    if expires_at is not None:
        utc_seconds(expires_at)
        body["expires_at"] = expires_at
    return body


def _body(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in BODY_FIELDS | OPTIONAL_FIELDS if k in doc}


def add_signature(doc: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """The document with `signer`'s signature added (replacing an older one by the same key)."""
    body = _body(doc)
    key = signer.public_key.hex()
    kept = [s for s in doc.get("signatures", []) if s.get("key") != key]
    return {**body, "signatures": [*kept, {"key": key, "sig": sign(signer, DOMAIN, body)}]}


def signed_document(
    overrides: dict[str, Any],
    version: int,
    issued_at: str,
    signers: list[Signer],
    expires_at: str | None = None,
) -> bytes:
    """A whole document: the default policy with `overrides`, signed by each of `signers`."""
    policy = policy_from_fields({**policy_fields(Policy()), **overrides})
    body = make_body(policy, version, issued_at, expires_at)
    doc: dict[str, Any] = {**body, "signatures": []}
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
        required = {k: v for k, v in doc.items() if k not in OPTIONAL_FIELDS}
        exact_keys(required, BODY_FIELDS | {"signatures"}, "policy document")
        raw = doc["signatures"]
        if not isinstance(raw, list) or len(raw) > MAX_SIGNATURES:
            raise PolicyDocError(f"signatures must be a list of at most {MAX_SIGNATURES}")
        pairs = [_signature(item) for item in raw]
    except PolicyDocError:
        raise
    except DocumentError as e:
        raise PolicyDocError(str(e)) from None
    return _body(doc), pairs


def _signature(item: object) -> tuple[bytes, bytes]:
    if not isinstance(item, dict) or set(item) != {"key", "sig"}:
        raise PolicyDocError('a signature must be {"key": …, "sig": …}')
    return hex_bytes(item["key"], KEY_BYTES, "signature key"), hex_bytes(
        item["sig"], SIG_BYTES, "signature"
    )


def check(
    data: bytes, trust: PolicyTrust, min_version: int = 0, now: float | None = None
) -> PolicyDocument:
    """Verify a document against this node's trust and the last accepted version; with
    `now`, also refuse it once its `expires_at` has passed."""
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
    expires_at = body.get("expires_at")
    if expires_at is not None:
        deadline = utc_seconds(expires_at)
        if now is not None and now >= deadline:
            raise PolicyDocError(f"version {version} expired at {expires_at}")
    if version < min_version:
        raise PolicyDocError(f"version {version} is older than the accepted {min_version}")
    policy = policy_from_fields(body["policy"])
    digest = hashlib.sha256(canonical(body)).digest()
    return PolicyDocument(version, issued_at, policy, frozenset(signers), expires_at, digest)


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
        "expires_at": doc.expires_at,
        "signers": sorted(k.hex() for k in doc.signers),
        "policy": policy_fields(doc.policy),
    }


@dataclass(frozen=True, slots=True)
class PolicyChoice:
    """What a node makes of its kept document and a candidate (the result of `choose`)."""

    document: PolicyDocument | None  # the newest good document; None: the built-in defaults
    keep: bytes | None  # candidate bytes to keep as the accepted document, if it is newer
    problem: str | None  # why the candidate (or the kept one) is not what it should be


def choose(
    trust: PolicyTrust | None,
    kept: bytes | None,
    candidate: bytes | None,
    now: float,
    name: str = "the policy document",
) -> PolicyChoice:
    """Which policy a node applies, from the bytes of the document it accepted last (`kept`,
    None if none) and of the candidate an update dropped (None if there is none).

    - Without trust, every document is ignored (the built-in defaults apply).
    - The kept document was verified when accepted; it is verified again (the trusted keys may
      have changed) but not refused for having expired since: a node goes on applying what
      it accepted, and says so, until a newer document comes.
    - A candidate is refused when malformed, unsigned, under-signed, forged, expired, older
      than the kept one, or of the kept one's version with other content; a refusal changes
      nothing and is the problem.
    """
    if trust is None:
        ignored = (
            None
            if candidate is None
            else f"{name} ignored: no trusted policy keys in [policy] keys"
        )
        return PolicyChoice(None, None, ignored)
    current, problem = None, None
    if kept is not None:
        try:
            current = check(kept, trust)
        except PolicyDocError as e:
            problem = f"the kept policy document no longer verifies ({e})"
    keep = None
    if candidate is not None:
        try:
            found = check(candidate, trust, current.version if current else 0, now)
        except PolicyDocError as e:
            return PolicyChoice(current, None, f"{name} refused: {e}; {_keeping(current)}")
        if current is not None and found.version == current.version:
            if found.body_digest != current.body_digest:
                return PolicyChoice(
                    current,
                    None,
                    f"{name} refused: version {found.version} differs from the accepted "
                    f"document of the same version; {_keeping(current)}",
                )
        else:
            current, keep, problem = found, candidate, None
    if problem is None and current is not None and current.expired(now):
        problem = f"policy version {current.version} expired at {current.expires_at}; "
        problem += "still applied until a newer signed document comes"
    return PolicyChoice(current, keep, problem)


def _keeping(current: PolicyDocument | None) -> str:
    if current is None:
        return "keeping the built-in defaults"
    return f"keeping version {current.version}"
