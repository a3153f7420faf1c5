"""What a storage request asks and what an offer promises, and the addressing of a volume.

Request and offer terms ride inside the broadcast (docs/broadcast.md) as packed msgpack in
the `terms` field, so the gossip layer stays kind-agnostic; their schemas are in
rms.wire.messages.volumes. Unpacking is capped and never raises on peer bytes: it returns
None, and the caller counts a drop. docs/volumes.md has the fields and why.

Sans-IO: no clock, no socket; `now` is wall-clock seconds where it matters.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Any

import msgpack

from rms.identity import node_id_of
from rms.wire.messages.volumes import MAX_TERMS, OFFER_TERMS, REQUEST_TERMS
from rms.wire.schema import Map, SchemaViolation

__all__ = [
    "IQN_PREFIX",
    "ISCSI_PORT",
    "VOLUME_PORT",
    "Offer",
    "OfferTerms",
    "RequestTerms",
    "StorageRequest",
    "inner_addresses",
    "iqn_for",
    "names_volume",
    "valid_iqn_base",
    "pick_endpoint",
    "unpack_map",
    "volume_prefix",
]

VOLUME_PORT = 7950  # the provider's claim/renew/release port on its management addresses
ISCSI_PORT = 3260  # the target's portal inside each volume's nested VPN (RFC 7143 §13.1)
IQN_PREFIX = "iqn.2026-11.cloud.true.volume"
MAX_IQN = 223  # bytes, RFC 7143 §4.2.7.1
_IQN_BASE = re.compile(r"iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9][a-z0-9.-]*(:[a-z0-9.:-]*[a-z0-9])?")
_VOLUME_ULA_CONTEXT = b"truecloud-volume-ula\x00"

_LIMITS: dict[str, Any] = {
    "raw": False,
    "strict_map_key": True,
    "use_list": False,
    "max_bin_len": MAX_TERMS,
    "max_str_len": MAX_TERMS,
    "max_array_len": 16,
    "max_map_len": 32,
    "max_ext_len": 0,
}


def unpack_map(data: bytes, schema: Map, cap: int = MAX_TERMS) -> dict[str, object] | None:
    """The fields of packed map `data` if it fits `schema` and `cap`; None otherwise."""
    if type(data) is not bytes or len(data) > cap:
        return None
    try:
        return schema.conform_map(msgpack.unpackb(data, **_LIMITS), 1, False)
    except SchemaViolation:
        return None
    except Exception:  # any msgpack failure on peer bytes is one kind of drop
        return None


def _pack(schema: Map, fields: Mapping[str, object]) -> bytes:
    packed: bytes = msgpack.packb(schema.conform_map(dict(fields), 1, True))
    return packed


@dataclass(frozen=True, slots=True)
class RequestTerms:
    """The storage-specific part of a request: how many volumes, and where the asker is."""

    count: int
    location: bytes  # 16-byte geographic location UUID
    network: bytes  # 16-byte network endpoint UUID

    def pack(self) -> bytes:
        """The `terms` bytes of a storage `gossip.request`."""
        fields = {"count": self.count, "location": self.location, "network": self.network}
        return _pack(REQUEST_TERMS, fields)

    @classmethod
    def unpack(cls, data: bytes) -> RequestTerms | None:
        """The terms in `data`, or None if they are malformed or oversized."""
        f = unpack_map(data, REQUEST_TERMS)
        if f is None:
            return None
        return cls(_int(f["count"]), _bytes(f["location"]), _bytes(f["network"]))


@dataclass(frozen=True, slots=True)
class StorageRequest:
    """A verified storage request as a provider sees it (from the RMS's long poll)."""

    requester: bytes  # ed25519 key of the consumer's node
    request_id: bytes
    size: int  # bytes per volume (the request's `amount`)
    terms: RequestTerms
    exclude_locations: tuple[bytes, ...] = ()
    exclude_networks: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class OfferTerms:
    """What a provider promises in its boxed answer (rms.wire.messages.volumes.OFFER_TERMS)."""

    offer_id: bytes
    size: int
    count: int
    location: bytes
    network: bytes
    port: int
    capacity: int
    free: int
    lease_s: int
    expires_ms: int
    price: int = 0
    reliability: int = 0

    def pack(self) -> bytes:
        """The `terms` bytes of a storage offer."""
        fields = {name: getattr(self, name) for name in OFFER_TERMS.required}
        return _pack(OFFER_TERMS, fields)

    @classmethod
    def unpack(cls, data: bytes) -> OfferTerms | None:
        """The terms in `data`, or None if they are malformed or oversized."""
        f = unpack_map(data, OFFER_TERMS)
        if f is None:
            return None
        return cls(**{name: f[name] for name in OFFER_TERMS.required})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Offer:
    """An opened offer as the consumer holds it: who, where to reach it, and the terms."""

    provider: bytes  # the provider's ed25519 node key (the answer's signer)
    addresses: tuple[IPv6Address, ...]  # the provider's management addresses
    terms: OfferTerms

    @property
    def provider_id(self) -> bytes:
        """The provider's node id."""
        return node_id_of(self.provider)

    @classmethod
    def from_answer(
        cls, provider: bytes, addresses: Sequence[bytes | str], terms: bytes
    ) -> Offer | None:
        """An offer from an opened answer's fields; None if anything is malformed."""
        parsed = OfferTerms.unpack(terms)
        if parsed is None or type(provider) is not bytes or len(provider) != 32:
            return None
        try:
            addrs = tuple(IPv6Address(a) for a in addresses[:4])
        except ValueError:
            return None
        return cls(provider, addrs, parsed) if addrs else None


def volume_prefix(volume_id: bytes) -> IPv6Network:
    """The volume's nested-VPN /64: an RFC 4193 ULA whose Global ID hashes the volume id."""
    global_id = hashlib.sha256(_VOLUME_ULA_CONTEXT + volume_id).digest()[:5]
    return IPv6Network((IPv6Address(b"\xfd" + global_id + bytes(10)), 64))


def inner_addresses(volume_id: bytes) -> tuple[IPv6Address, IPv6Address]:
    """The provider's (::1) and the client's (::2) address inside the volume's nested VPN."""
    base = int(volume_prefix(volume_id).network_address)
    return IPv6Address(base | 1), IPv6Address(base | 2)


def iqn_for(volume_id: bytes, base: str = IQN_PREFIX) -> str:
    """The target name of a volume (RFC 7143 §4.2.7.1): BASE:<volume id hex>. The base is
    the cloud's own, or the one a provider's target imposes (TrueNAS: its base name)."""
    return f"{base}:{volume_id.hex()}"


def valid_iqn_base(base: str) -> bool:
    """Whether `base` can start a volume's target name: an `iqn.` name of lower-case
    letters, digits, `.`, `-` and `:` that leaves room for `:<32 hex>` in 223 bytes."""
    return len(base) <= MAX_IQN - 33 and _IQN_BASE.fullmatch(base) is not None


def names_volume(iqn: str, volume_id: bytes) -> bool:
    """Whether a grant's target name is one for this volume: a valid base, `:`, its id."""
    base, sep, tail = iqn.rpartition(":")
    return sep == ":" and tail == volume_id.hex() and valid_iqn_base(base)


def pick_endpoint(
    mine: Sequence[IPv6Address], theirs: Sequence[IPv6Address]
) -> tuple[IPv6Address, IPv6Address] | None:
    """(my address, their address) sharing a management VPN /64, or None if none does."""
    for their in theirs:
        for own in mine:
            if IPv6Network((own, 64), strict=False) == IPv6Network((their, 64), strict=False):
                return own, their
    return None


def _int(value: object) -> int:
    return value if type(value) is int else 0


def _bytes(value: object) -> bytes:
    return value if type(value) is bytes else b""
