"""The attach path of one lease: the nested WireGuard link, then the iSCSI login, a file out.

Issue 5: *each volume is exported over its own WireGuard VPN nested in the management VPN,
whose only peer is the client*. On our side that is one interface per lease (wireguard-go
here, the kernel where it exists, through rms.wg) with our key, our inner address and the
provider as its only peer, allowed only the provider's inner address; then the initiator
(the libiscsi bridge in the lab, open-iscsi on Linux nodes) logs in with the lease's CHAP
credentials to the portal inside that link. Detach undoes both, the login first.
"""

from __future__ import annotations

import hashlib
from ipaddress import ip_network
from pathlib import Path

import structlog

from cfs.initiator.driver import InitiatorDriver, InitiatorError
from cfs.lease import Lease, VolumeError
from rms.wg.errors import WireGuardError
from rms.wg.manager import WireGuard
from rms.wg.model import ConfigError, Endpoint, InterfaceConfig, PeerConfig

KEEPALIVE_S = 15  # keeps the provider's side of the link fresh through NAT and idle pools
NAME_PREFIX = "cfs"

log = structlog.get_logger("cfs.attach")


def interface_name(lease: Lease) -> str:
    """A per-lease interface name (≤ 15 characters), stable across restarts."""
    return NAME_PREFIX + hashlib.sha256(lease.lease_id.encode()).hexdigest()[:10]


def link_config(lease: Lease) -> InterfaceConfig:
    """Our side of the lease's nested link: the provider its only peer."""
    t = lease.tunnel
    try:
        peer = PeerConfig(
            t.peer_key,
            Endpoint.parse(t.peer_endpoint),
            frozenset({ip_network(t.peer_address)}),
            KEEPALIVE_S,
            preshared_key=t.psk,
        )
        name = interface_name(lease)
        return InterfaceConfig(name, t.private_key, t.listen_port, frozenset({t.address}), (peer,))
    except ConfigError as e:
        raise VolumeError(f"lease {lease.lease_id}: unusable link: {e}") from None


class Attacher:
    """Attaches and detaches leases: WireGuard link, then initiator login."""

    def __init__(self, wireguard: WireGuard, initiator: InitiatorDriver) -> None:
        self.wireguard, self.initiator = wireguard, initiator

    async def attach(self, lease: Lease) -> Path:
        """Bring up the link and log in; the device path. VolumeError on failure (undone)."""
        config = link_config(lease)
        try:
            await self.wireguard.ensure(config)
            path = await self.initiator.attach(lease.target)
        except (WireGuardError, InitiatorError) as e:
            await self.detach(lease)
            raise VolumeError(f"attach of lease {lease.lease_id} failed: {e}") from None
        log.info("cfs.attached", lease=lease.lease_id, interface=config.name, device=str(path))
        return path

    async def reattach(self, lease: Lease) -> Path:
        """Log in again over a fresh session (the bridge's first error is final); a session
        that is still healthy and answers is kept as it is, never torn down."""
        state = await self.initiator.state(lease.target)
        healthy = state.attached and state.healthy and state.path is not None
        if healthy and state.path is not None and await self.initiator.probe(lease.target):
            return state.path
        try:
            await self.initiator.detach(lease.target)
        except InitiatorError as e:
            log.warning("cfs.detach_failed", lease=lease.lease_id, reason=str(e))
        return await self.attach(lease)

    async def detach(self, lease: Lease) -> None:
        """Log out and remove the link; errors are logged, never raised (teardown goes on)."""
        try:
            await self.initiator.detach(lease.target)
        except InitiatorError as e:
            log.warning("cfs.detach_failed", lease=lease.lease_id, reason=str(e))
        try:
            await self.wireguard.remove(interface_name(lease))
        except WireGuardError as e:
            log.warning("cfs.link_remove_failed", lease=lease.lease_id, reason=str(e))
