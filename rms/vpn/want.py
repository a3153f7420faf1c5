"""How many management VPNs this node wants (sans-IO; docs/management-vpns.md, "Wanting more").

Every node aims for `policy.vpn_target` VPNs. A node may want more, up to `policy.vpn_max`:
its `[vpn] want` setting, or a local service asking at run time (`POST /v1/vpns/want`; the
CFS does when too few providers share a VPN with it, docs/cfs.md "Reach"). Beyond the target
the node only joins VPNs that have room, it never founds one: a new VPN of one member
reaches nobody, and the other nodes, already at their target, would not come to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rms.policy import Policy

MAX_BODY_BYTES = 256  # {"vpns": 3} is a dozen bytes


class WantError(ValueError):
    """A request for a wanted count that cannot be taken; the message says why."""


@dataclass
class WantedVpns:
    """The wanted count, always within [policy.vpn_min, policy.vpn_max]."""

    policy: Policy
    configured: int = 0  # `[vpn] want`; 0: the policy's target
    value: int = field(init=False)
    source: str = field(init=False, default="policy")

    def __post_init__(self) -> None:
        p = self.policy
        self.value = p.vpn_target
        if self.configured:
            # the config is checked against the largest policy; a signed one may be tighter
            self.value = min(max(self.configured, p.vpn_min), p.vpn_max)
            self.source = "config"

    def set(self, count: int, source: str) -> None:
        """Want `count` VPNs from now on; WantError outside [vpn_min, vpn_max]."""
        p = self.policy
        if not p.vpn_min <= count <= p.vpn_max:
            raise WantError(f"vpns must lie in [{p.vpn_min}, {p.vpn_max}] (the policy's bounds)")
        self.value, self.source = count, source

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
        return {"count": self.value, "source": self.source, "target": target, "max": top}


def parse_want(body: bytes) -> int:
    """The count of a `POST /v1/vpns/want` body (`{"vpns": N}`); WantError if malformed."""
    if len(body) > MAX_BODY_BYTES:
        raise WantError(f"body over {MAX_BODY_BYTES} bytes")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WantError('body is not JSON; send {"vpns": N}') from None
    if not isinstance(value, dict) or set(value) != {"vpns"}:
        raise WantError('body must be exactly {"vpns": N}')
    count = value["vpns"]
    if type(count) is not int:  # bool is an int subclass, and so is not taken
        raise WantError("vpns must be a whole number")
    return count
