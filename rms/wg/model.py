"""What a WireGuard interface should be (config) and what it is (state): frozen values.

A config is the whole desired state of one interface: its key, its port, its addresses and
every peer. A state is what a backend reads back. The mesh controller (`rms.wg.mesh`)
compares the two; backends only ever apply the difference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
)

from rms.wg.keys import WgPrivateKey, WgPublicKey

IPNetwork = IPv4Network | IPv6Network
IPInterface = IPv4Interface | IPv6Interface
IPAddress = IPv4Address | IPv6Address

# Linux interface names are at most 15 bytes (IFNAMSIZ - 1); the name is also the file name
# of wireguard-go's UAPI socket, so it must not contain "/" or anything a shell would mangle.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,15}")
MAX_PORT = 65535


class ConfigError(ValueError):
    """A config that no WireGuard interface can take (bad name, duplicate peer, ...)."""


def short_key(key: WgPublicKey) -> str:
    """A public key abbreviated as wireguard-go logs it: `AbCd…wxyz`."""
    text = key.base64()
    return f"{text[:4]}…{text[-5:-1]}"


def check_name(name: str) -> str:
    """Return name if it is a valid interface name, else raise ConfigError."""
    if not _NAME.fullmatch(name):
        raise ConfigError("an interface name is 1-15 letters, digits, '_' or '-'")
    return name


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A peer's UDP endpoint: an IP literal and a port (the UAPI takes no host names)."""

    host: IPAddress
    port: int

    def __post_init__(self) -> None:
        if not 1 <= self.port <= MAX_PORT:
            raise ConfigError(f"endpoint port {self.port} is not in 1-{MAX_PORT}")

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse `192.0.2.1:51820` or `[2001:db8::1]:51820`."""
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
        else:
            host, sep, port = text.rpartition(":")
            if ":" in host:
                raise ConfigError("an IPv6 endpoint needs brackets: [addr]:port")
        if not sep or not port.isdigit() or len(port) > 5:
            raise ConfigError("an endpoint is host:port with a numeric port")
        try:
            return cls(ip_address(host), int(port))
        except ValueError:
            raise ConfigError("an endpoint's host must be an IP address") from None

    def __str__(self) -> str:
        if isinstance(self.host, IPv6Address):
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """One peer as it should be configured."""

    public_key: WgPublicKey
    endpoint: Endpoint | None = None
    allowed_ips: frozenset[IPNetwork] = frozenset()
    persistent_keepalive: int = 0  # seconds; 0 turns keepalives off
    # Set when the peer is added (a nested volume link has one); never read back or printed.
    preshared_key: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.persistent_keepalive <= MAX_PORT:
            raise ConfigError("persistent_keepalive is 0-65535 seconds")
        if not isinstance(self.allowed_ips, frozenset):
            raise ConfigError("allowed_ips must be a frozenset of networks")
        if self.preshared_key and len(self.preshared_key) != 32:
            raise ConfigError("a preshared key is 32 bytes")


@dataclass(frozen=True, slots=True)
class InterfaceConfig:
    """The whole desired state of one interface; its private key prints as its public half."""

    name: str
    private_key: WgPrivateKey
    listen_port: int = 0  # 0: let the backend pick one at creation and never change it
    addresses: frozenset[IPInterface] = frozenset()
    peers: tuple[PeerConfig, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.name)
        if not 0 <= self.listen_port <= MAX_PORT:
            raise ConfigError(f"listen_port {self.listen_port} is not in 0-{MAX_PORT}")
        if not isinstance(self.addresses, frozenset):
            raise ConfigError("addresses must be a frozenset of interfaces")
        if managed_addresses(self.addresses) != self.addresses:
            raise ConfigError(f"{self.name}: IPv6 link-local addresses are the kernel's own")
        self._check_peers()

    def _check_peers(self) -> None:
        own = self.private_key.public_key()
        keys = [p.public_key for p in self.peers]
        if own in keys:
            # WireGuard silently drops a peer that carries the interface's own key.
            raise ConfigError(f"{self.name}: a peer cannot have the interface's own key")
        if len(set(keys)) != len(keys):
            raise ConfigError(f"{self.name}: a peer appears twice")
        nets = [net for p in self.peers for net in p.allowed_ips]
        if len(set(nets)) != len(nets):
            # An allowed IP belongs to exactly one peer; a second claim would move it.
            raise ConfigError(f"{self.name}: an allowed IP is claimed by two peers")

    @property
    def public_key(self) -> WgPublicKey:
        """The interface's public key."""
        return self.private_key.public_key()


@dataclass(frozen=True, slots=True)
class PeerState:
    """One peer as a backend reports it."""

    public_key: WgPublicKey
    endpoint: Endpoint | None = None
    allowed_ips: frozenset[IPNetwork] = frozenset()
    persistent_keepalive: int = 0
    last_handshake: float | None = None  # UNIX time of the last handshake; None: never
    rx_bytes: int = 0
    tx_bytes: int = 0


@dataclass(frozen=True, slots=True)
class InterfaceState:
    """An interface as a backend reports it; it holds no private key, only its public half."""

    name: str
    public_key: WgPublicKey | None = None  # None: no private key set yet
    listen_port: int = 0
    peers: tuple[PeerState, ...] = ()  # sorted by public key
    addresses: frozenset[IPInterface] = frozenset()  # IPv6 link-local ones left out
    up: bool = False

    def peer(self, key: WgPublicKey) -> PeerState | None:
        """The peer with this public key, if present."""
        return next((p for p in self.peers if p.public_key == key), None)

    def peer_map(self) -> dict[WgPublicKey, PeerState]:
        """The peers by public key."""
        return {p.public_key: p for p in self.peers}


def sorted_peers(peers: dict[WgPublicKey, PeerState]) -> tuple[PeerState, ...]:
    """Peers in the canonical order of InterfaceState.peers."""
    return tuple(peers[k] for k in sorted(peers, key=lambda k: k.raw))


def managed_addresses(addresses: frozenset[IPInterface]) -> frozenset[IPInterface]:
    """The addresses the driver owns: all but the IPv6 link-local ones the kernel adds."""
    return frozenset(a for a in addresses if not (a.version == 6 and a.ip.is_link_local))
