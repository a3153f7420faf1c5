"""Sealing the minted WireGuard key from the guardian to the newcomer (NaCl `Box`).

The guest link is no secret (its WireGuard key is published in the VPN record), so the key
the guardian mints is boxed from the guardian's X25519 key to the newcomer's, both derived
from their ed25519 node keys (rms.identity): only the node that signed the hello can open
it, even if someone else is on the guest link.
"""

from __future__ import annotations

from nacl.exceptions import CryptoError
from nacl.public import Box

from rms.identity import NodeIdentity, peer_box_public_key
from rms.wg.keys import KEY_SIZE, WgPrivateKey

__all__ = ["BOX_NONCE_SIZE", "open_key", "seal_key"]

BOX_NONCE_SIZE = Box.NONCE_SIZE


def seal_key(guardian: NodeIdentity, newcomer_key: bytes, key: WgPrivateKey, nonce: bytes) -> bytes:
    """`key` boxed from `guardian` to the node whose ed25519 key is `newcomer_key`."""
    box = Box(guardian.box_private_key(), peer_box_public_key(newcomer_key))
    return bytes(box.encrypt(key.raw, nonce))


def open_key(newcomer: NodeIdentity, guardian_key: bytes, sealed: bytes) -> WgPrivateKey | None:
    """The key sealed to us by `guardian_key`, or None if it does not open (peer data)."""
    try:
        box = Box(newcomer.box_private_key(), peer_box_public_key(guardian_key))
        raw = box.decrypt(sealed)
    except (CryptoError, ValueError, TypeError):
        return None
    return WgPrivateKey(raw) if len(raw) == KEY_SIZE else None
