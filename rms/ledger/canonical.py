"""Signed JSON documents: one canonical encoding, domain-separated ed25519 signatures.

Policy documents, usage receipts, ledger heads and audit reports are small JSON objects that
people read and that travel as files (a TUF target, a DHT value, a control API body). Each is
signed over its canonical encoding - sorted keys, no whitespace, UTF-8, no NaN - prefixed
with a domain string, so a signature made for one kind of document never verifies as another.
"""

from __future__ import annotations

import json
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from rms.wire.envelope import Signer

KEY_BYTES = 32
SIG_BYTES = 64


class DocumentError(ValueError):
    """A signed document that is malformed, oversized, or whose signature does not hold."""


def canonical(value: object) -> bytes:
    """The one byte string a JSON value signs as."""
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as e:
        raise DocumentError(f"not canonical JSON: {e}") from None
    return text.encode("utf-8")


def sign(signer: Signer, domain: bytes, body: object) -> str:
    """The hex signature of `body` under `domain` by `signer`."""
    return signer.sign(domain + canonical(body)).hex()


def verify(domain: bytes, body: object, public_key: bytes, signature: bytes) -> bool:
    """Whether `signature` is `public_key`'s signature of `body` under `domain`."""
    if len(public_key) != KEY_BYTES or len(signature) != SIG_BYTES:
        return False
    try:
        VerifyKey(public_key).verify(domain + canonical(body), signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def parse_object(data: bytes, max_bytes: int, what: str) -> dict[str, Any]:
    """A JSON object from untrusted bytes; DocumentError when it is too large or malformed."""
    if len(data) > max_bytes:
        raise DocumentError(f"{what} is larger than {max_bytes} bytes")
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DocumentError(f"{what} is not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise DocumentError(f"{what} is not a JSON object")
    return value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def hex_bytes(value: object, size: int, what: str) -> bytes:
    """`size` bytes from a lower-case hex string; DocumentError otherwise."""
    # Lower case only, no spaces: one byte string has one spelling (fromhex would take both).
    if not isinstance(value, str) or len(value) != 2 * size or value.strip(_HEX):
        raise DocumentError(f"{what} must be {size} bytes of lower-case hex")
    return bytes.fromhex(value)


_HEX = "0123456789abcdef"


def whole(value: object, what: str, low: int = 0, high: int = 2**63 - 1) -> int:
    """An int in [low, high] (not a bool); DocumentError otherwise."""
    if type(value) is not int or not low <= value <= high:
        raise DocumentError(f"{what} must be a whole number in [{low}, {high}]")
    return value


def text(value: object, what: str, max_chars: int = 256) -> str:
    """A string of at most `max_chars` characters; DocumentError otherwise."""
    if not isinstance(value, str) or len(value) > max_chars:
        raise DocumentError(f"{what} must be a string of at most {max_chars} characters")
    return value


def exact_keys(doc: dict[str, Any], keys: set[str], what: str) -> None:
    """Refuse a document with missing or unknown fields."""
    missing = keys - set(doc)
    extra = set(doc) - keys
    parts = [f"missing {sorted(missing)}"] if missing else []
    parts += [f"unknown {sorted(extra)}"] if extra else []
    if parts:
        raise DocumentError(f"{what}: fields " + ", ".join(parts))
