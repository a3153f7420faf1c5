"""The confidential part of a grant: sealed by the provider, opened only by its client.

The box is NaCl `Box(provider X25519, client X25519)`, both keys derived from the ed25519
node keys (rms.identity), the same construction as broadcast answers. The grant envelope is
signed, so the box is bound to the provider; it opens only with the client's key, so a grant
copied to someone else is useless to them. A `GrantSecrets` never prints its secrets.

Sans-IO: the box nonce comes from os.urandom, as everywhere NaCl boxes are made here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from ipaddress import IPv6Address

import msgpack
from nacl.exceptions import CryptoError
from nacl.public import Box

from rms.identity import NodeIdentity, peer_box_public_key
from rms.volumes.terms import unpack_map
from rms.wire.messages.volumes import GRANT_SECRETS, MAX_GRANT_BOX

__all__ = ["GrantSecrets", "open_secrets", "seal_secrets"]


@dataclass(frozen=True, slots=True)
class GrantSecrets:
    """What a client needs to reach its volume: target, CHAP and the nested VPN."""

    iqn: str
    portal: IPv6Address  # provider's address inside the nested VPN
    portal_port: int
    client_address: IPv6Address  # client's address inside the nested VPN
    prefix_len: int
    chap_user: str
    chap_secret: str = field(repr=False)
    wg_key: bytes  # provider's nested-VPN WireGuard public key
    wg_psk: bytes = field(repr=False)
    endpoint: IPv6Address  # provider's management address, the tunnel's outer end
    endpoint_port: int

    def fields(self) -> dict[str, object]:
        """The plaintext map sealed in the grant's box."""
        return {
            "iqn": self.iqn,
            "portal": self.portal.packed,
            "portal_port": self.portal_port,
            "client_address": self.client_address.packed,
            "prefix_len": self.prefix_len,
            "chap_user": self.chap_user,
            "chap_secret": self.chap_secret,
            "wg_key": self.wg_key,
            "wg_psk": self.wg_psk,
            "endpoint": self.endpoint.packed,
            "endpoint_port": self.endpoint_port,
        }

    @classmethod
    def from_fields(cls, f: dict[str, object]) -> GrantSecrets | None:
        """Secrets from a conformed GRANT_SECRETS map; None if a value is unusable."""
        try:
            return cls(
                iqn=str(f["iqn"]),
                portal=IPv6Address(_b(f["portal"])),
                portal_port=_i(f["portal_port"]),
                client_address=IPv6Address(_b(f["client_address"])),
                prefix_len=_i(f["prefix_len"]),
                chap_user=str(f["chap_user"]),
                chap_secret=str(f["chap_secret"]),
                wg_key=_b(f["wg_key"]),
                wg_psk=_b(f["wg_psk"]),
                endpoint=IPv6Address(_b(f["endpoint"])),
                endpoint_port=_i(f["endpoint_port"]),
            )
        except (KeyError, ValueError):
            return None


def seal_secrets(secrets: GrantSecrets, provider: NodeIdentity, client_key: bytes) -> bytes:
    """The box of `secrets` from `provider` to the node whose ed25519 key is `client_key`."""
    plain: bytes = msgpack.packb(GRANT_SECRETS.conform_map(secrets.fields(), 1, True))
    box = Box(provider.box_private_key(), peer_box_public_key(client_key))
    sealed = bytes(box.encrypt(plain, os.urandom(Box.NONCE_SIZE)))
    if len(sealed) > MAX_GRANT_BOX:
        raise ValueError(f"grant secrets of {len(sealed)} bytes exceed {MAX_GRANT_BOX}")
    return sealed


def open_secrets(sealed: bytes, client: NodeIdentity, provider_key: bytes) -> GrantSecrets | None:
    """The secrets in a grant's box if it opens for `client` from `provider_key`; never raises."""
    try:
        box = Box(client.box_private_key(), peer_box_public_key(provider_key))
        plain = box.decrypt(sealed)
    except (CryptoError, ValueError, TypeError, RuntimeError):
        return None
    fields = unpack_map(plain, GRANT_SECRETS, MAX_GRANT_BOX)
    return None if fields is None else GrantSecrets.from_fields(fields)


def _b(value: object) -> bytes:
    if type(value) is not bytes:
        raise ValueError("expected bytes")
    return value


def _i(value: object) -> int:
    if type(value) is not int:
        raise ValueError("expected an int")
    return value
