"""Addresses on the management VPNs: one IPv6 ULA prefix per VPN, one address per member.

Each VPN's prefix is an RFC 4193 unique local /48 whose 40-bit Global ID is taken from
SHA-256 of the VPN's UUID (RFC 4193 section 3.2 asks for a pseudo-random Global ID; a hash of
a random UUID is one, and every member derives the same prefix with no coordination). Subnet
0 holds the members: a member's interface id is the first 64 bits of its node id, so its
address is stable across key rotation and known to anyone who knows the node. Subnet 0xffff
holds the guest link of the VPN's guardians.
"""

from __future__ import annotations

import hashlib
import uuid
from ipaddress import IPv6Address, IPv6Interface, IPv6Network

MEMBER_SUBNET = 0
GUEST_SUBNET = 0xFFFF
ULA_PREFIX = 0xFD


def vpn_prefix(vpn_id: uuid.UUID) -> IPv6Network:
    """The VPN's /48 unique local prefix."""
    global_id = hashlib.sha256(vpn_id.bytes).digest()[:5]
    high = bytes([ULA_PREFIX]) + global_id + bytes(10)
    return IPv6Network((IPv6Address(high), 48))


def _subnet(vpn_id: uuid.UUID, subnet: int) -> IPv6Network:
    base = int(vpn_prefix(vpn_id).network_address) | (subnet << 64)
    return IPv6Network((IPv6Address(base), 64))


def member_network(vpn_id: uuid.UUID) -> IPv6Network:
    """The /64 all members of the VPN live in."""
    return _subnet(vpn_id, MEMBER_SUBNET)


def member_address(vpn_id: uuid.UUID, node_id: bytes) -> IPv6Interface:
    """A member's address on the VPN, with the /64 prefix length."""
    if len(node_id) != 32:
        raise ValueError("a node id is 32 bytes")
    net = member_network(vpn_id)
    host = int.from_bytes(node_id[:8], "big")
    return IPv6Interface((IPv6Address(int(net.network_address) | host), 64))


def guest_addresses(vpn_id: uuid.UUID) -> tuple[IPv6Interface, IPv6Interface]:
    """The guardian's and the guest's addresses on the guest link (a /127 pair)."""
    base = int(_subnet(vpn_id, GUEST_SUBNET).network_address)
    guardian = IPv6Interface((IPv6Address(base | 1), 127))
    guest = IPv6Interface((IPv6Address(base), 127))
    return guardian, guest
