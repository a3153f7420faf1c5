"""The change list: the only thing a WireGuard backend is ever asked to apply.

The mesh controller plans a tuple of these; each backend translates it (UAPI text for
wireguard-go, generic netlink for the kernel, rtnetlink for addresses and link state).
Each change says exactly one thing, so a log line or a test can name what was touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from rms.wg.keys import WgPrivateKey, WgPublicKey
from rms.wg.model import Endpoint, IPInterface, IPNetwork, PeerConfig, short_key


@dataclass(frozen=True, slots=True)
class SetPrivateKey:
    """Replace the interface's private key (its repr shows only the public half)."""

    private_key: WgPrivateKey

    def describe(self) -> str:
        """A log-safe summary."""
        return f"set private key (public {short_key(self.private_key.public_key())})"


@dataclass(frozen=True, slots=True)
class SetListenPort:
    """Move the interface to another UDP port."""

    port: int

    def describe(self) -> str:
        """A log-safe summary."""
        return f"set listen port {self.port}"


@dataclass(frozen=True, slots=True)
class RemovePeer:
    """Remove a peer and its allowed IPs."""

    public_key: WgPublicKey

    def describe(self) -> str:
        """A log-safe summary."""
        return f"remove peer {short_key(self.public_key)}"


@dataclass(frozen=True, slots=True)
class AddPeer:
    """Add a peer with its whole configuration."""

    peer: PeerConfig

    def describe(self) -> str:
        """A log-safe summary."""
        return f"add peer {short_key(self.peer.public_key)}"


@dataclass(frozen=True, slots=True)
class UpdatePeer:
    """Change some settings of an existing peer; None means "leave as it is"."""

    public_key: WgPublicKey
    endpoint: Endpoint | None = None
    allowed_ips: frozenset[IPNetwork] | None = None  # replaces the whole set
    persistent_keepalive: int | None = None

    def describe(self) -> str:
        """A log-safe summary."""
        what = [
            name
            for name, value in (
                ("endpoint", self.endpoint),
                ("allowed ips", self.allowed_ips),
                ("keepalive", self.persistent_keepalive),
            )
            if value is not None
        ]
        return f"update peer {short_key(self.public_key)}: {', '.join(what) or 'nothing'}"


@dataclass(frozen=True, slots=True)
class SetLinkUp:
    """Bring the link administratively up."""

    def describe(self) -> str:
        """A log-safe summary."""
        return "set link up"


@dataclass(frozen=True, slots=True)
class AddAddress:
    """Add an address to the link."""

    address: IPInterface

    def describe(self) -> str:
        """A log-safe summary."""
        return f"add address {self.address}"


@dataclass(frozen=True, slots=True)
class RemoveAddress:
    """Remove an address from the link."""

    address: IPInterface

    def describe(self) -> str:
        """A log-safe summary."""
        return f"remove address {self.address}"


DeviceChange = SetPrivateKey | SetListenPort
PeerChange = RemovePeer | AddPeer | UpdatePeer
WgChange = DeviceChange | PeerChange
LinkChange = SetLinkUp | AddAddress | RemoveAddress
Change = WgChange | LinkChange


def wg_changes(changes: tuple[Change, ...]) -> tuple[WgChange, ...]:
    """The changes that go to WireGuard itself, in their planned order."""
    return tuple(c for c in changes if not isinstance(c, SetLinkUp | AddAddress | RemoveAddress))


def link_changes(changes: tuple[Change, ...]) -> tuple[LinkChange, ...]:
    """The changes that go to the link (rtnetlink), in their planned order."""
    return tuple(c for c in changes if isinstance(c, SetLinkUp | AddAddress | RemoveAddress))


def describe_all(changes: tuple[Change, ...]) -> list[str]:
    """Log-safe summaries of a change list."""
    return [c.describe() for c in changes]
