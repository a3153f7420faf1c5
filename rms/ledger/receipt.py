"""Usage receipts: what a provider gave a consumer, signed by both (docs/accounting.md).

Seed 000, "Accounting and Billing": "Record distributed resource usage; provide a basis for
peer-to-peer billing". A receipt says that `provider` gave `consumer` `amount` units of a
resource over a period - byte-seconds of storage or millicore-seconds of CPU - for one lease
(`lease`, e.g. a volume id) and one `serial` within it. Both parties sign the same canonical
body under the domain `truecloud receipt v1`, so neither can later deny it alone and no third
party can make one. A receipt is small (at most 4 KiB) and travels as JSON::

    {"body": {"format": "truecloud-receipt/1", "provider": "<hex key>", "consumer": "<hex key>",
              "resource": "storage", "amount": 3600000000, "start": 1763769600,
              "end": 1763773200, "lease": "vol-3", "serial": 1},
     "provider_sig": "<hex>", "consumer_sig": "<hex>"}
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from rms.ledger.canonical import (
    KEY_BYTES,
    SIG_BYTES,
    DocumentError,
    canonical,
    exact_keys,
    hex_bytes,
    sign,
    text,
    verify,
    whole,
)
from rms.wire.envelope import Signer

FORMAT = "truecloud-receipt/1"
DOMAIN = b"truecloud receipt v1\x00"
RESOURCES = ("storage", "cpu")
MAX_RECEIPT_BYTES = 4096
MAX_PERIOD_S = 31 * 86400  # a receipt covers at most a month; longer use is several receipts
BODY_KEYS = {"format", "provider", "consumer", "resource", "amount", "start", "end", "lease"}
BODY_KEYS |= {"serial"}
ROLES = ("provider", "consumer")


class ReceiptError(DocumentError):
    """A receipt that is malformed, oversized, or not signed by both parties."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """A verified receipt."""

    provider: bytes
    consumer: bytes
    resource: str
    amount: int
    start: int
    end: int
    lease: str
    serial: int
    digest: bytes  # SHA-256 of the canonical body: the receipt's identity in a ledger
    signed: dict[str, Any]  # the whole signed receipt, as received

    def role_of(self, key: bytes) -> str | None:
        """'provider', 'consumer' or None for a node key."""
        if key == self.provider:
            return "provider"
        if key == self.consumer:
            return "consumer"
        return None


def make_body(
    provider: bytes,
    consumer: bytes,
    resource: str,
    *,
    amount: int,
    period: tuple[int, int],
    lease: str,
    serial: int,
) -> dict[str, Any]:
    """A receipt body, checked as a receiver would check it."""
    body = {
        "format": FORMAT,
        "provider": provider.hex(),
        "consumer": consumer.hex(),
        "resource": resource,
        "amount": amount,
        "start": period[0],
        "end": period[1],
        "lease": lease,
        "serial": serial,
    }
    check_body(body)
    return body


def check_body(body: object) -> tuple[bytes, bytes]:
    """Check a body's fields; returns (provider, consumer) keys; ReceiptError otherwise."""
    if not isinstance(body, dict):
        raise ReceiptError("a receipt body must be an object")
    try:
        exact_keys(body, BODY_KEYS, "receipt body")
        provider = hex_bytes(body["provider"], KEY_BYTES, "provider")
        consumer = hex_bytes(body["consumer"], KEY_BYTES, "consumer")
        whole(body["amount"], "amount")
        start = whole(body["start"], "start", high=2**40)
        end = whole(body["end"], "end", high=2**40)
        whole(body["serial"], "serial")
        lease = text(body["lease"], "lease", 128)
    except ReceiptError:
        raise
    except DocumentError as e:
        raise ReceiptError(str(e)) from None
    if body["format"] != FORMAT:
        raise ReceiptError(f"format is not {FORMAT}")
    if body["resource"] not in RESOURCES:
        raise ReceiptError(f"resource is one of {', '.join(RESOURCES)}")
    if provider == consumer:
        raise ReceiptError("a node cannot give a receipt to itself")
    if not 0 < end - start <= MAX_PERIOD_S:
        raise ReceiptError("the period must end after it starts and last at most 31 days")
    if not lease:
        raise ReceiptError("lease must not be empty")
    return provider, consumer


def sign_as(body: dict[str, Any], signer: Signer) -> tuple[str, str]:
    """This signer's role in the receipt and its hex signature of the body."""
    provider, consumer = check_body(body)
    if signer.public_key == provider:
        return "provider", sign(signer, DOMAIN, body)
    if signer.public_key == consumer:
        return "consumer", sign(signer, DOMAIN, body)
    raise ReceiptError("this node is neither the provider nor the consumer of the receipt")


def check(signed: object) -> Receipt:
    """Verify a signed receipt: well formed, small, and signed by both parties."""
    if not isinstance(signed, dict):
        raise ReceiptError("a receipt must be an object")
    try:
        exact_keys(signed, {"body", "provider_sig", "consumer_sig"}, "receipt")
        if len(canonical(signed)) > MAX_RECEIPT_BYTES:
            raise ReceiptError(f"a receipt is at most {MAX_RECEIPT_BYTES} bytes")
        provider, consumer = check_body(signed["body"])
        sigs = [hex_bytes(signed[f"{r}_sig"], SIG_BYTES, f"{r}_sig") for r in ROLES]
    except ReceiptError:
        raise
    except DocumentError as e:
        raise ReceiptError(str(e)) from None
    body = signed["body"]
    for role, key, sig in zip(ROLES, (provider, consumer), sigs, strict=True):
        if not verify(DOMAIN, body, key, sig):
            raise ReceiptError(f"the {role}'s signature does not hold: forged or altered")
    return Receipt(
        provider=provider,
        consumer=consumer,
        resource=body["resource"],
        amount=body["amount"],
        start=body["start"],
        end=body["end"],
        lease=body["lease"],
        serial=body["serial"],
        digest=hashlib.sha256(canonical(body)).digest(),
        signed=signed,
    )
