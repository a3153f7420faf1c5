"""How many management VPNs this node wants (sans-IO; docs/management-vpns.md, "Wanting more").

Every node aims for `policy.vpn_target` VPNs. A node may want more, up to `policy.vpn_max`:
its `[vpn] want` setting, or a local service asking at run time (`POST /v1/vpns/want`; the
CFS does when too few providers share a VPN with it, docs/cfs.md "Reach"). Beyond the target
the node only joins VPNs that have room, it never founds one: a new VPN of one member
reaches nobody, and the other nodes, already at their target, would not come to it.

A request may name management addresses the service wants to reach (`toward`): VPNs whose
member /64 holds one of them are tried first, since joining one is sure to reach that node.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from typing import Any, TypeVar

from rms.discovery.record import VpnRecord
from rms.overlay import member_network
from rms.policy import Policy

MAX_TOWARD = 32  # addresses a request may name
MAX_BODY_BYTES = 64 + MAX_TOWARD * 48  # {"vpns": 3, "toward": [32 IPv6 addresses]}
ULA = IPv6Network("fc00::/7")  # management addresses are unique local (rms.overlay)
R = TypeVar("R", bound=VpnRecord)


class WantError(ValueError):
    """A request for a wanted count that cannot be taken; the message says why."""


@dataclass
class WantedVpns:
    """The wanted count, always within [policy.vpn_min, policy.vpn_max]."""

    policy: Policy
    configured: int = 0  # `[vpn] want`; 0: the policy's target
    value: int = field(init=False)
    source: str = field(init=False, default="policy")
    toward: frozenset[IPv6Network] = field(init=False, default=frozenset())  # member /64s

    def __post_init__(self) -> None:
        p = self.policy
        self.value = p.vpn_target
        if self.configured:
            # the config is checked against the largest policy; a signed one may be tighter
            self.value = min(max(self.configured, p.vpn_min), p.vpn_max)
            self.source = "config"

    def set(self, count: int, source: str, toward: Sequence[IPv6Address] = ()) -> None:
        """Want `count` VPNs from now on, those toward these addresses first; WantError
        outside [vpn_min, vpn_max] (and nothing changes)."""
        p = self.policy
        if not p.vpn_min <= count <= p.vpn_max:
            raise WantError(f"vpns must lie in [{p.vpn_min}, {p.vpn_max}] (the policy's bounds)")
        self.value, self.source = count, source
        self.toward = frozenset(IPv6Network((a, 64), strict=False) for a in toward)

    def rounds(self, candidates: Sequence[R]) -> list[list[R]]:
        """The candidates in the order to try them: the VPNs toward the wanted addresses,
        then the others (one round when no address is wanted or none matches)."""
        near = [c for c in candidates if member_network(c.vpn_id) in self.toward]
        rest = [c for c in candidates if c not in near]
        return [near, rest] if near else [rest]

    def joins(self, held: int) -> bool:
        """Whether the node should look for another VPN to join."""
        return held < self.value

    def may_found(self, held: int) -> bool:
        """Whether the node may open a VPN of its own: only to reach the policy's target."""
        return held < self.policy.vpn_target

    def eager(self, held: int, none_fit: bool) -> bool:
        """Whether to look again soon: below the target, or beyond it while VPNs had room."""
        return self.may_found(held) or (self.joins(held) and not none_fit)

    def status(self) -> dict[str, Any]:
        """The `wanted` object of the `vpn_joins` status section."""
        p = self.policy
        target, top = p.vpn_target, p.vpn_max
        return {
            "count": self.value, "source": self.source, "target": target, "max": top,
            "toward": len(self.toward),
        }  # fmt: skip


@dataclass(frozen=True)
class WantRequest:
    """A parsed `POST /v1/vpns/want` body."""

    count: int
    toward: tuple[IPv6Address, ...] = ()


def parse_want(body: bytes) -> WantRequest:
    """The body `{"vpns": N}` or `{"vpns": N, "toward": [IPv6, …]}`; WantError if malformed."""
    if len(body) > MAX_BODY_BYTES:
        raise WantError(f"body over {MAX_BODY_BYTES} bytes")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise WantError('body is not JSON; send {"vpns": N}') from None
    if not isinstance(value, dict) or not {"vpns"} <= set(value) <= {"vpns", "toward"}:
        raise WantError('body must be {"vpns": N} with an optional "toward" list')
    count = value["vpns"]
    if type(count) is not int:  # bool is an int subclass, and so is not taken
        raise WantError("vpns must be a whole number")
    return WantRequest(count, _addresses(value.get("toward", [])))


def _addresses(value: object) -> tuple[IPv6Address, ...]:
    if not isinstance(value, list) or len(value) > MAX_TOWARD:
        raise WantError(f"toward must be a list of at most {MAX_TOWARD} addresses")
    found = []
    for item in value:
        try:
            address = IPv6Address(item) if isinstance(item, str) and len(item) <= 45 else None
        except ValueError:
            address = None
        if address is None or address.scope_id is not None or address not in ULA:
            raise WantError("toward holds management addresses (IPv6, fc00::/7) only")
        found.append(address)
    return tuple(found)
