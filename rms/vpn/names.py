"""Interface names and ports of a node's VPNs (docs/management-vpns.md, "Identifiers").

A node holds at most `policy.vpn_max` (4) VPNs; each gets a slot k that fixes its ports, so
that a restarted node and its peers agree on them without asking.
"""

from __future__ import annotations

import uuid

MANAGEMENT_PORT_BASE = 51820
GUEST_PORT_BASE = 51900
MAX_SLOTS = 4
PREFIXES = ("tcm", "tcg", "tcq")  # management, guardian's guest link, newcomer's guest link


def _short(vpn_id: uuid.UUID) -> str:
    return vpn_id.hex[:8]


def management_interface(vpn_id: uuid.UUID) -> str:
    """The WireGuard interface of the VPN itself."""
    return f"tcm{_short(vpn_id)}"


def guardian_guest_interface(vpn_id: uuid.UUID) -> str:
    """A guardian's guest interface, whose one peer is the guest slot."""
    return f"tcg{_short(vpn_id)}"


def newcomer_guest_interface(vpn_id: uuid.UUID) -> str:
    """A newcomer's side of the guest link while it asks to join."""
    return f"tcq{_short(vpn_id)}"


def is_ours(interface: str) -> bool:
    """Whether an interface name is one this module hands out."""
    return len(interface) == 11 and interface[:3] in PREFIXES


def management_port(slot: int) -> int:
    """The UDP port of the management interface in slot k."""
    return MANAGEMENT_PORT_BASE + _check(slot)


def guest_port(slot: int) -> int:
    """The UDP port of a guardian's guest interface in slot k."""
    return GUEST_PORT_BASE + _check(slot)


def free_slot(taken: set[int]) -> int | None:
    """The lowest free slot, or None when all are taken."""
    return next((k for k in range(MAX_SLOTS) if k not in taken), None)


def _check(slot: int) -> int:
    if not 0 <= slot < MAX_SLOTS:
        raise ValueError(f"VPN slot {slot} is not in 0-{MAX_SLOTS - 1}")
    return slot
