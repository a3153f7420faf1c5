"""The signed envelope every wire message travels in, and how to encode one.

A datagram is ``signature (64 bytes) || payload``. The payload is one msgpack array
``[version, type, sender, timestamp_ms, nonce, body]``; the signature is ed25519 by the
sender over ``SIGNING_CONTEXT || payload``, i.e. over the exact payload bytes, prefixed with
a context string so that no other signed object of the project (DHT records, policy) can
ever be passed off as a wire message or the other way round. docs/wire.md has the details.

Sans-IO: time is an argument, nothing here touches a socket or a clock.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import msgpack

from rms.wire.registry import MessageType
from rms.wire.schema import SchemaViolation

__all__ = [
    "DEFAULT_MAX_DATAGRAM",
    "HEADER_FIELDS",
    "NONCE_SIZE",
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "SIGNING_CONTEXT",
    "VERSION",
    "EncodeError",
    "Envelope",
    "Signer",
    "WireError",
    "encode",
    "sign_payload",
]

VERSION = 1
SIGNING_CONTEXT = b"truecloud-wire-v1\x00"
SIGNATURE_SIZE = 64
PUBLIC_KEY_SIZE = 32
NONCE_SIZE = 16
HEADER_FIELDS = 6  # version, type, sender, timestamp_ms, nonce, body
DEFAULT_MAX_DATAGRAM = 64 * 1024
# The envelope array is depth 1, so the body map sits at depth 2 (schema.MAX_DEPTH).
BODY_DEPTH = 2


class WireError(Exception):
    """A local error of the wire layer: we, not a peer, broke a rule."""


class EncodeError(WireError):
    """We tried to encode a message that breaks its schema or the envelope's limits."""


class Signer(Protocol):
    """What encoding needs of a node identity (rms.identity.NodeIdentity is one)."""

    @property
    def public_key(self) -> bytes:
        """The 32-byte ed25519 public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The detached 64-byte ed25519 signature of `message`."""
        ...


@dataclass(frozen=True, slots=True)
class Envelope:
    """An accepted message: authenticated, fresh, first seen, body checked."""

    version: int
    msg_type: MessageType
    sender: bytes  # the sender's ed25519 public key
    timestamp_ms: int
    nonce: bytes
    body: Mapping[str, object]

    @property
    def sender_id(self) -> bytes:
        """The sender's node id, SHA-256 of its public key."""
        return hashlib.sha256(self.sender).digest()


def sign_payload(signer: Signer, payload: bytes) -> bytes:
    """The datagram for an encoded payload: its context-bound signature, then the payload."""
    return signer.sign(SIGNING_CONTEXT + payload) + payload


def encode(
    identity: Signer,
    msg_type: MessageType,
    body: Mapping[str, object],
    now: float,
    *,
    nonce: bytes | None = None,
    max_datagram: int = DEFAULT_MAX_DATAGRAM,
) -> bytes:
    """Sign `body` as a `msg_type` message from `identity` at wall-clock time `now` (s)."""
    try:
        conformed = msg_type.body.conform_map(body, BODY_DEPTH, True)
    except SchemaViolation as exc:
        raise EncodeError(f"{msg_type.name}: {exc}") from None
    if nonce is None:
        nonce = os.urandom(NONCE_SIZE)
    elif type(nonce) is not bytes or len(nonce) != NONCE_SIZE:
        raise EncodeError(f"a nonce is {NONCE_SIZE} bytes")
    header = (VERSION, msg_type.name, identity.public_key, _timestamp_ms(now), nonce)
    try:
        payload: bytes = msgpack.packb((*header, conformed))
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a lone surrogate in a str
        raise EncodeError(f"{msg_type.name}: cannot pack the body: {exc}") from None
    datagram = sign_payload(identity, payload)
    if len(datagram) > max_datagram:
        raise EncodeError(
            f"{msg_type.name}: datagram of {len(datagram)} bytes exceeds {max_datagram}"
        )
    return datagram


def _timestamp_ms(now: float) -> int:
    if not math.isfinite(now):
        raise EncodeError(f"now must be a finite wall-clock time in seconds, got {now}")
    return int(now * 1000)
