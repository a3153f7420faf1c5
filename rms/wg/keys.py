"""WireGuard keys: Curve25519 pairs, shown only as public halves.

WireGuard's keys are X25519 keys (the WireGuard paper, section 5.4); `wg` prints them in
base64 and the UAPI speaks hex. A private key's repr and str never show it, so it cannot
reach a log line, a status output or an error message by accident.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field

from nacl.bindings import crypto_scalarmult_base

KEY_SIZE = 32


class KeyFormatError(ValueError):
    """A key in text or bytes that is not a 32-byte WireGuard key."""


def _clamp(raw: bytes) -> bytes:
    # Curve25519 clamping (RFC 7748 section 5), as `wg genkey` does.
    b = bytearray(raw)
    b[0] &= 248
    b[31] = (b[31] & 127) | 64
    return bytes(b)


@dataclass(frozen=True, slots=True, repr=False)
class WgPublicKey:
    """A WireGuard public key."""

    raw: bytes

    def __post_init__(self) -> None:
        if type(self.raw) is not bytes or len(self.raw) != KEY_SIZE:
            raise KeyFormatError("a WireGuard public key is 32 bytes")

    @classmethod
    def from_base64(cls, text: str) -> WgPublicKey:
        """Parse the base64 form `wg` prints."""
        return cls(_decode_b64(text))

    @classmethod
    def from_hex(cls, text: str) -> WgPublicKey:
        """Parse the hex form the UAPI speaks."""
        return cls(_decode_hex(text))

    def base64(self) -> str:
        """The form `wg` prints."""
        return base64.b64encode(self.raw).decode()

    def hex(self) -> str:
        """The form the UAPI speaks."""
        return self.raw.hex()

    def __str__(self) -> str:
        return self.base64()

    def __repr__(self) -> str:
        return f"WgPublicKey({self.base64()})"


@dataclass(frozen=True, slots=True, repr=False)
class WgPrivateKey:
    """A WireGuard private key; it prints as its public half only."""

    raw: bytes = field(compare=True)

    def __post_init__(self) -> None:
        if type(self.raw) is not bytes or len(self.raw) != KEY_SIZE:
            raise KeyFormatError("a WireGuard private key is 32 bytes")

    @classmethod
    def generate(cls) -> WgPrivateKey:
        """A fresh key from the OS random source."""
        return cls(_clamp(os.urandom(KEY_SIZE)))

    @classmethod
    def from_hex(cls, text: str) -> WgPrivateKey:
        """Parse the hex form the UAPI speaks."""
        return cls(_decode_hex(text))

    @classmethod
    def from_base64(cls, text: str) -> WgPrivateKey:
        """Parse the base64 form `wg genkey` prints."""
        return cls(_decode_b64(text))

    def public_key(self) -> WgPublicKey:
        """The matching public key."""
        return WgPublicKey(crypto_scalarmult_base(_clamp(self.raw)))

    def hex(self) -> str:
        """The UAPI form; only drivers call this, never a logger."""
        return self.raw.hex()

    def __repr__(self) -> str:
        return f"WgPrivateKey(public={self.public_key().base64()})"

    __str__ = __repr__


def _decode_b64(text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError("not base64") from None
    if len(raw) != KEY_SIZE:
        raise KeyFormatError("a WireGuard key is 32 bytes")
    return raw


def _decode_hex(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise KeyFormatError("not hex") from None
    if len(raw) != KEY_SIZE:
        raise KeyFormatError("a WireGuard key is 32 bytes")
    return raw
