"""What the CFS holds of a remote volume (a `Lease`) and where it gets them (`VolumeSource`).

A lease is the provider's signed grant as the CFS uses it: which provider, how big, until
when, how to log in (iSCSI target and CHAP) and how to reach it (the nested WireGuard link
whose only peer is the provider). The volume protocol itself (request, offers, claim,
grant, renew, release; docs/volumes.md) lives behind `VolumeSource`, so the pool and its
healing controller never see a message. The secret and the private key never print.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Any, Protocol

from cfs.initiator.driver import VolumeTarget
from cfs.placement import Candidate
from rms.wg.keys import WgPrivateKey, WgPublicKey

ISCSI_PORT = 3260


class VolumeError(Exception):
    """Obtaining, renewing or releasing a volume failed; the message says which and why."""


@dataclass(frozen=True, slots=True, repr=False)
class Tunnel:
    """The nested WireGuard link of one lease: our side, and the provider as its only peer."""

    private_key: WgPrivateKey  # ours, made for this lease alone
    address: IPv4Interface | IPv6Interface  # our address inside the link
    peer_key: WgPublicKey
    peer_endpoint: str  # "host:port" of the provider's nested-VPN listener
    peer_address: IPv4Address | IPv6Address  # the provider inside the link (the portal)
    psk: bytes = b""  # the link's preshared key, if the grant carries one
    listen_port: int = 0  # our side's UDP port (told to the provider in the claim); 0: any

    def __repr__(self) -> str:
        return f"Tunnel(address={self.address}, peer={self.peer_key}, via={self.peer_endpoint})"


@dataclass(frozen=True, slots=True, repr=False)
class Lease:
    """One granted volume: the provider, its size, its expiry, its target and its link."""

    lease_id: str
    provider: Candidate
    size: int  # bytes
    expires_at: float  # UNIX seconds
    target: VolumeTarget
    tunnel: Tunnel

    def __repr__(self) -> str:
        return (
            f"Lease({self.lease_id}, provider={self.provider.provider[:12]}, size={self.size}, "
            f"expires_at={self.expires_at:.0f})"
        )

    def renewed(self, expires_at: float) -> Lease:
        """The same lease with a later expiry (never an earlier one)."""
        return Lease(
            self.lease_id,
            self.provider,
            self.size,
            max(self.expires_at, expires_at),
            self.target,
            self.tunnel,
        )


def portal_of(address: IPv4Address | IPv6Address, port: int = ISCSI_PORT) -> str:
    """The iSCSI portal text for an address: `a.b.c.d:port` or `[v6]:port`."""
    return f"[{address}]:{port}" if isinstance(address, IPv6Address) else f"{address}:{port}"


class VolumeSource(Protocol):
    """Where volumes come from: the volume protocol through the local RMS (or a fake)."""

    async def offers(self, size: int) -> list[Candidate]:
        """Ask the cloud for volumes of `size` bytes; the candidates that answered."""
        ...

    async def obtain(self, candidate: Candidate, size: int) -> Lease:
        """Claim the candidate's offer; the granted lease, or VolumeError."""
        ...

    async def renew(self, lease: Lease) -> Lease:
        """Extend the lease; the renewed lease, or VolumeError."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give the volume back (the provider wipes it); VolumeError if it did not answer."""
        ...


class KeepsLeases(Protocol):
    """A VolumeSource whose leases outlive a restart: it records what it needs besides the
    lease to renew and release it, and takes a saved lease back (cfs/leasestore.py)."""

    def record(self, lease: Lease) -> dict[str, Any]:
        """A JSON-safe record of the source's own state of lease; VolumeError if unknown."""
        ...

    def adopt(self, lease: Lease, record: dict[str, Any]) -> None:
        """Hold a saved lease again; VolumeError if its record does not fit it."""
        ...


def providers_of(leases: Sequence[Lease]) -> tuple[Candidate, ...]:
    """The candidates the leases came from, in order."""
    return tuple(lease.provider for lease in leases)
