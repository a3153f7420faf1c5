"""Where a node is: its public addresses and the location and network UUIDs it declares.

The seed asks a newcomer for "the UUIDs for its geographical location and network endpoint",
so that guardians can keep each VPN diverse. A person configures a place name or a UUID; a
name becomes a UUID by UUID v5 in True Cloud's namespace, so the same name always gives the
same UUID on every node. With no network configured, the network is the public address's
/24 (IPv4) or /48 (IPv6): nodes behind one provider's prefix count as one network.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

NAMESPACE = uuid.UUID("6b1f9c3e-7d0a-5e7b-9a41-3c2f8d6e1a50")
UNKNOWN_LOCATION = "unknown"
IPV4_NETWORK_PREFIX = 24
IPV6_NETWORK_PREFIX = 48

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class LocalityError(ValueError):
    """The configured locality cannot be used; the message says which value and why."""


@dataclass(frozen=True, slots=True)
class Locality:
    """What a node tells a guardian about where it is."""

    public_ips: tuple[IPAddress, ...]
    location: uuid.UUID
    network: uuid.UUID


def as_uuid(kind: str, text: str) -> uuid.UUID:
    """A UUID given as text, or the UUID v5 of a name of this kind."""
    text = text.strip()
    try:
        return uuid.UUID(text)
    except ValueError:
        return uuid.uuid5(NAMESPACE, f"{kind}:{text.lower()}")


def network_of(address: IPAddress) -> uuid.UUID:
    """The network UUID of an address: its /24 or /48."""
    prefix = IPV4_NETWORK_PREFIX if address.version == 4 else IPV6_NETWORK_PREFIX
    net = ipaddress.ip_network((address, prefix), strict=False)
    return as_uuid("network", str(net))


def parse_ips(texts: Iterable[str]) -> tuple[IPAddress, ...]:
    """Addresses from config text, refusing anything that cannot be a public endpoint."""
    out = []
    for text in texts:
        try:
            address = ipaddress.ip_address(text.strip())
        except ValueError:
            raise LocalityError(f"vpn.public_ips: {text!r} is not an IP address") from None
        if address.is_loopback or address.is_multicast or address.is_unspecified:
            raise LocalityError(f"vpn.public_ips: {text} cannot be reached by peers")
        out.append(address)
    return tuple(dict.fromkeys(out))


def resolve(public_ips: Iterable[str], location: str, network: str) -> Locality:
    """The node's locality from its configuration."""
    ips = parse_ips(public_ips)
    if not ips:
        raise LocalityError("no public address: set vpn.public_ips or give the host one")
    loc = as_uuid("location", location or UNKNOWN_LOCATION)
    net = as_uuid("network", network) if network else network_of(ips[0])
    return Locality(ips, loc, net)


def usable_addresses(candidates: Iterable[str]) -> list[str]:
    """The addresses among `candidates` (e.g. an interface's) that peers could reach."""
    usable = []
    for text in candidates:
        try:
            address = ipaddress.ip_address(text.split("/")[0])
        except ValueError:
            continue
        private_overlay = address.version == 6 and address in ipaddress.ip_network("fc00::/7")
        if address.is_loopback or address.is_link_local or private_overlay:
            continue
        usable.append(str(address))
    return usable
