"""The `admission.*` message family: a newcomer asks a guardian to let it into a VPN.

Over one TCP connection to the guardian's guest address (docs/admission.md): the guardian
sends `admission.challenge` (a fresh nonce), the newcomer answers `admission.hello` (the
nonce, its location and network UUIDs, optionally its endpoint), the guardian answers
`admission.offer` (the signed roster with the newcomer in it, its management address, and a
freshly minted WireGuard key sealed in a NaCl box to the newcomer) or `admission.refuse`
(a reason code and a sentence), and the newcomer confirms with `admission.ack`. A guardian
whose slot is taken, or which has used up its attempts for the minute, answers only
`admission.busy` with a hint when to come back.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv6Address

from rms.wire.envelope import Envelope, WireError
from rms.wire.messages.roster import (
    ENDPOINT,
    MAX_ROSTER_BYTES,
    UUID_FIELD,
    Endpoint,
    bytes_field,
    endpoint_of,
    expect,
    int_field,
    uuid_field,
)
from rms.wire.registry import MessageType
from rms.wire.schema import Bytes, Int, Map, Str

__all__ = [
    "ACK",
    "BUSY",
    "CHALLENGE",
    "CHALLENGE_SIZE",
    "HELLO",
    "MAX_RETRY_AFTER_MS",
    "MAX_TEXT",
    "OFFER",
    "REFUSE",
    "SEALED_KEY_SIZE",
    "TYPES",
    "Ack",
    "Busy",
    "Challenge",
    "Hello",
    "Offer",
    "Refuse",
]

CHALLENGE_SIZE = 16
SEALED_KEY_SIZE = 24 + 16 + 32  # NaCl box: nonce, MAC, the 32-byte WireGuard key
MAX_CODE = 32
MAX_TEXT = 200
MAX_RETRY_AFTER_MS = 600_000
NONCE_FIELD = Bytes(max_len=CHALLENGE_SIZE, min_len=CHALLENGE_SIZE)

CHALLENGE = MessageType("admission.challenge", Map({"vpn_id": UUID_FIELD, "nonce": NONCE_FIELD}))
HELLO = MessageType(
    "admission.hello",
    Map(
        {"challenge": NONCE_FIELD, "location": UUID_FIELD, "network": UUID_FIELD},
        optional={"endpoint": ENDPOINT},
    ),
)
OFFER = MessageType(
    "admission.offer",
    Map(
        {
            "challenge": NONCE_FIELD,
            "vpn_id": UUID_FIELD,
            "roster": Bytes(max_len=MAX_ROSTER_BYTES, min_len=1),
            "address": Bytes(max_len=16, min_len=16),
            "sealed_key": Bytes(max_len=SEALED_KEY_SIZE, min_len=SEALED_KEY_SIZE),
        }
    ),
)
REFUSE = MessageType(
    "admission.refuse",
    Map({"challenge": NONCE_FIELD, "code": Str(max_len=MAX_CODE), "text": Str(max_len=MAX_TEXT)}),
)
BUSY = MessageType(
    "admission.busy",
    Map({"reason": Str(max_len=MAX_CODE), "retry_after_ms": Int(0, MAX_RETRY_AFTER_MS)}),
)
ACK = MessageType("admission.ack", Map({"challenge": NONCE_FIELD}))
TYPES: tuple[MessageType, ...] = (CHALLENGE, HELLO, OFFER, REFUSE, BUSY, ACK)


@dataclass(frozen=True, slots=True)
class Challenge:
    """The guardian's opening: answer this nonce, for this VPN."""

    vpn_id: uuid.UUID
    nonce: bytes

    def body(self) -> dict[str, object]:
        """The body to encode as an `admission.challenge`."""
        return {"vpn_id": self.vpn_id.bytes, "nonce": self.nonce}

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Challenge:
        """The message carried by an accepted `admission.challenge` envelope."""
        expect(envelope, CHALLENGE)
        return cls(uuid_field(envelope.body, "vpn_id"), bytes_field(envelope.body, "nonce"))


@dataclass(frozen=True, slots=True)
class Hello:
    """The newcomer's answer: the challenge, where it is, and through which network."""

    challenge: bytes
    location: uuid.UUID
    network: uuid.UUID
    endpoint: Endpoint | None = None

    def body(self) -> dict[str, object]:
        """The body to encode as an `admission.hello`."""
        body: dict[str, object] = {
            "challenge": self.challenge,
            "location": self.location.bytes,
            "network": self.network.bytes,
        }
        if self.endpoint is not None:
            body["endpoint"] = self.endpoint.body()
        return body

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Hello:
        """The message of an accepted `admission.hello`; BodyError for a bad endpoint."""
        expect(envelope, HELLO)
        body = envelope.body
        raw_endpoint = body.get("endpoint")
        return cls(
            bytes_field(body, "challenge"),
            uuid_field(body, "location"),
            uuid_field(body, "network"),
            None if raw_endpoint is None else endpoint_of(raw_endpoint),
        )


@dataclass(frozen=True, slots=True)
class Offer:
    """The guardian lets the newcomer in: roster, address and the sealed WireGuard key."""

    challenge: bytes
    vpn_id: uuid.UUID
    roster: bytes
    address: IPv6Address
    sealed_key: bytes

    def body(self) -> dict[str, object]:
        """The body to encode as an `admission.offer`."""
        return {
            "challenge": self.challenge,
            "vpn_id": self.vpn_id.bytes,
            "roster": self.roster,
            "address": self.address.packed,
            "sealed_key": self.sealed_key,
        }

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Offer:
        """The message carried by an accepted `admission.offer` envelope."""
        expect(envelope, OFFER)
        body = envelope.body
        return cls(
            bytes_field(body, "challenge"),
            uuid_field(body, "vpn_id"),
            bytes_field(body, "roster"),
            IPv6Address(bytes_field(body, "address")),
            bytes_field(body, "sealed_key"),
        )


@dataclass(frozen=True, slots=True)
class Refuse:
    """The guardian says no: a reason code (docs/admission.md) and a sentence for people."""

    challenge: bytes
    code: str
    text: str

    def body(self) -> dict[str, object]:
        """The body to encode as an `admission.refuse`."""
        return {"challenge": self.challenge, "code": self.code, "text": self.text[:MAX_TEXT]}

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Refuse:
        """The message carried by an accepted `admission.refuse` envelope."""
        expect(envelope, REFUSE)
        body = envelope.body
        return cls(bytes_field(body, "challenge"), _str(body, "code"), _str(body, "text"))


@dataclass(frozen=True, slots=True)
class Busy:
    """Not now: the slot is taken or the attempts are used up; come back after a while."""

    reason: str
    retry_after_ms: int

    def body(self) -> dict[str, object]:
        """The body to encode as an `admission.busy`."""
        return {"reason": self.reason, "retry_after_ms": self.retry_after_ms}

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Busy:
        """The message carried by an accepted `admission.busy` envelope."""
        expect(envelope, BUSY)
        return cls(_str(envelope.body, "reason"), int_field(envelope.body, "retry_after_ms"))


@dataclass(frozen=True, slots=True)
class Ack:
    """The newcomer has the key and the roster; the guardian can free its slot."""

    challenge: bytes

    def body(self) -> dict[str, object]:
        """The body to encode as an `admission.ack`."""
        return {"challenge": self.challenge}

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Ack:
        """The message carried by an accepted `admission.ack` envelope."""
        expect(envelope, ACK)
        return cls(bytes_field(envelope.body, "challenge"))


def _str(body: Mapping[str, object], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise WireError(f"body field {name!r} is not a string")
    return value
