"""The provider's records: its settings, its offers and leases, what it asks its adapter to do.

A lease binds one volume to one client key for a bounded time; every rule that keeps a
volume to a single client ("no volume is ever attached by two clients", issue 5) is checked
against these records in rms.volumes.provider. Refusals carry a `Reason`, a short word the
client can act on; docs/volumes.md lists them.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv6Address

from rms.identity import NodeIdentity, node_id_of
from rms.volumes.grants import GrantSecrets, seal_secrets
from rms.volumes.terms import (
    IQN_PREFIX,
    ISCSI_PORT,
    VOLUME_PORT,
    inner_addresses,
    iqn_for,
    valid_iqn_base,
)
from rms.wg.keys import WgPrivateKey
from rms.wire.messages.volumes import ID_SIZE

__all__ = [
    "Action",
    "Export",
    "Lease",
    "LeaseRequest",
    "OfferRecord",
    "ProviderSettings",
    "Reason",
    "Unexport",
    "build_lease",
]

_SECRET_ALPHABET = string.ascii_letters + string.digits
DEFAULT_SECRET_LEN = 24  # RFC 7143 §12.1.3 asks for at least 12 bytes; tgt takes up to 255
MIN_SECRET_LEN, MAX_SECRET_LEN = 12, 255


class Reason(StrEnum):
    """Why a provider refuses; the word travels in `volumes.refused` and in counters."""

    OVER_CAPACITY = "over_capacity"  # not enough free space for the volume
    NO_SLOTS = "no_slots"  # every nested-VPN port is in use
    BAD_SIZE = "bad_size"  # smaller or larger than this provider serves
    BAD_TERMS = "bad_terms"  # request terms missing or malformed
    EXCLUDED = "excluded"  # the requester ruled out our location or network
    OWN_REQUEST = "own_request"
    UNKNOWN_OFFER = "unknown_offer"  # never made, or forgotten (e.g. after a restart)
    OFFER_EXPIRED = "offer_expired"
    NOT_YOUR_OFFER = "not_your_offer"  # the offer was made to another requester
    OFFER_TAKEN = "offer_taken"  # every volume of the offer is claimed already
    SIZE_MISMATCH = "size_mismatch"  # the claim's size is not the offer's
    CLAIM_CONFLICT = "claim_conflict"  # a claim id reused for another offer or key
    UNKNOWN_VOLUME = "unknown_volume"
    NOT_YOUR_LEASE = "not_your_lease"  # renew or release by someone else than the client
    LEASE_EXPIRED = "lease_expired"
    EXPORT_FAILED = "export_failed"  # the target or the nested VPN could not be set up


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """How one provider serves: its capacity, where it is, and its limits."""

    capacity: int  # bytes contributed
    location: bytes  # 16-byte geographic location UUID
    network: bytes  # 16-byte network endpoint UUID
    addresses: tuple[IPv6Address, ...]  # management addresses (one per VPN)
    port: int = VOLUME_PORT
    wg_port_first: int = 52400  # nested-VPN listen ports: first, and how many (= max volumes)
    wg_port_count: int = 64
    lease_s: int = 300  # a grant lasts this long unless renewed
    offer_ttl_s: int = 60  # a claim must come within this
    min_size: int = 16 * 1024**2
    max_per_request: int = 1  # volumes offered per request (placement wants 8 providers)
    price: int = 0  # credits per GiB and day: a hint until accounting lands (issue 6)
    reliability: int = 0  # per mille uptime: a hint until availability is measured (issue 6)
    tombstone_s: int = 3600  # how long a released volume id answers a repeated release
    max_offers: int = 1024  # open offers remembered; the oldest is forgotten first
    iqn_base: str = IQN_PREFIX  # target names are BASE:<volume id hex> (TrueNAS: its base name)
    chap_secret_len: int = DEFAULT_SECRET_LEN  # TrueNAS takes 12-16 characters

    def __post_init__(self) -> None:
        if not valid_iqn_base(self.iqn_base):
            raise ValueError(f"{self.iqn_base!r} cannot start a volume's iSCSI target name")
        if not MIN_SECRET_LEN <= self.chap_secret_len <= MAX_SECRET_LEN:
            raise ValueError(f"CHAP secrets are {MIN_SECRET_LEN}..{MAX_SECRET_LEN} characters")
        if self.capacity < 0 or self.min_size < 1 or self.lease_s < 2:
            raise ValueError("capacity >= 0, min_size >= 1 and lease_s >= 2 are required")
        if len(self.location) != 16 or len(self.network) != 16:
            raise ValueError("location and network are 16-byte UUIDs")
        if not 1 <= self.wg_port_first <= self.wg_port_first + self.wg_port_count - 1 <= 65535:
            raise ValueError("the nested-VPN port range must lie in 1..65535")


@dataclass(slots=True)
class OfferRecord:
    """An open offer: to whom, how much, until when, and the claims already on it."""

    offer_id: bytes
    requester: bytes
    request_id: bytes
    size: int
    count: int
    expires_ms: int
    terms: bytes  # the packed OfferTerms as sent, for an identical repeat
    claims: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class Lease:
    """One volume leased to one client."""

    volume_id: bytes
    client: bytes  # the client's ed25519 node key
    claim_id: bytes
    offer_id: bytes
    size: int
    wg_port: int
    wg_private: WgPrivateKey = field(repr=False)
    client_wg_key: bytes
    client_wg_port: int
    client_endpoint: IPv6Address  # the client's management address: the tunnel's far end
    secrets: GrantSecrets
    box: bytes = field(repr=False)  # the sealed secrets, resent unchanged on a repeated claim
    expires_ms: int
    renewal: tuple[bytes, int] | None = None  # last renewal id and the expiry it gave
    exported: bool = False

    @property
    def client_id(self) -> bytes:
        """The client's node id."""
        return node_id_of(self.client)

    def status(self, now_ms: int) -> dict[str, object]:
        """The lease for the `volumes` status section: no secrets, no keys."""
        return {
            "volume": self.volume_id.hex(),
            "size": self.size,
            "client": self.client_id.hex(),
            "iqn": self.secrets.iqn,
            "wg_port": self.wg_port,
            "exported": self.exported,
            "expires_in_s": round((self.expires_ms - now_ms) / 1000, 1),
        }


@dataclass(frozen=True, slots=True)
class Export:
    """Create the volume (sparse, zeroed), its nested VPN and its target, as `lease` says."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class Unexport:
    """Tear down the target and the nested VPN of a volume and wipe its data."""

    volume_id: bytes
    iqn: str
    wg_port: int
    why: str  # released, expired or export_failed


Action = Export | Unexport


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """What a lease is made of, from an accepted claim and the provider's choices."""

    client: bytes
    claim_id: bytes
    offer_id: bytes
    size: int
    wg_port: int
    client_wg_key: bytes
    client_wg_port: int
    own_endpoint: IPv6Address
    client_endpoint: IPv6Address
    expires_ms: int
    iqn_base: str = IQN_PREFIX
    chap_secret_len: int = DEFAULT_SECRET_LEN


def build_lease(identity: NodeIdentity, rng: random.Random, req: LeaseRequest) -> Lease:
    """A new lease: fresh volume id, nested-VPN key and PSK, CHAP secret, sealed secrets."""
    volume_id = rng.randbytes(ID_SIZE)
    portal, client_address = inner_addresses(volume_id)
    wg_private = WgPrivateKey(rng.randbytes(32))
    secrets = GrantSecrets(
        iqn=iqn_for(volume_id, req.iqn_base),
        portal=portal,
        portal_port=ISCSI_PORT,
        client_address=client_address,
        prefix_len=64,
        chap_user=f"c{volume_id.hex()[:16]}",
        chap_secret="".join(rng.choices(_SECRET_ALPHABET, k=req.chap_secret_len)),
        wg_key=wg_private.public_key().raw,
        wg_psk=rng.randbytes(32),
        endpoint=req.own_endpoint,
        endpoint_port=req.wg_port,
    )
    return Lease(
        volume_id=volume_id,
        client=req.client,
        claim_id=req.claim_id,
        offer_id=req.offer_id,
        size=req.size,
        wg_port=req.wg_port,
        wg_private=wg_private,
        client_wg_key=req.client_wg_key,
        client_wg_port=req.client_wg_port,
        client_endpoint=req.client_endpoint,
        secrets=secrets,
        box=seal_secrets(secrets, identity, req.client),
        expires_ms=req.expires_ms,
    )
