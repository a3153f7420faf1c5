"""Knocking on a VPN: the newcomer's guest link and one admission exchange over it.

The guest link is a WireGuard interface made with the record's published guest key, whose
only peer is the guardian's guest interface. It lives exactly as long as one attempt.
"""

from __future__ import annotations

import contextlib
import ipaddress
from ipaddress import IPv6Network

from rms.admission.client import request_admission
from rms.admission.events import Busy, Failed, Outcome, Refused
from rms.admission.newcomer import session_for
from rms.admission.server import ADMISSION_PORT
from rms.discovery.record import VpnRecord
from rms.overlay import guest_addresses
from rms.vpn.locality import IPAddress
from rms.vpn.membership import NodeContext
from rms.vpn.names import management_port, newcomer_guest_interface
from rms.vpn.trace import JoinTrace
from rms.wg.errors import WireGuardError
from rms.wg.model import Endpoint as WgEndpoint
from rms.wg.model import InterfaceConfig, PeerConfig
from rms.wire.messages.roster import Endpoint


def guardian_endpoint(record: VpnRecord, ours: tuple[IPAddress, ...]) -> WgEndpoint | None:
    """The guardian's guest endpoint, in an address family this node has."""
    families = {ip.version for ip in ours}
    for text in record.public_ips:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if ip.version in families:
            return WgEndpoint(ip, record.guest_port)
    return None


def guest_link(record: VpnRecord, endpoint: WgEndpoint) -> InterfaceConfig:
    """The newcomer's guest interface for this record."""
    guardian, guest = guest_addresses(record.vpn_id)
    peer = PeerConfig(
        record.guest_public_key, endpoint, frozenset({IPv6Network((guardian.ip, 128))})
    )
    return InterfaceConfig(
        newcomer_guest_interface(record.vpn_id),
        record.guest_private_key,
        0,
        frozenset({guest}),
        (peer,),
    )


async def knock(
    ctx: NodeContext, record: VpnRecord, slot: int, trace: JoinTrace | None = None
) -> Outcome:
    """One admission attempt at the record's guardian over a fresh guest link."""
    ours = ctx.locality.public_ips
    target = guardian_endpoint(record, ours)
    if target is None:
        return Failed(record.vpn_id, "the guardian has no address in a family this node has")
    own = next(ip for ip in ours if ip.version == target.host.version)
    link = guest_link(record, target)
    session = session_for(
        record,
        ctx.identity,
        location=ctx.locality.location,
        network=ctx.locality.network,
        endpoint=Endpoint(own, management_port(slot)),
        policy=ctx.policy,
    )
    guardian, _ = guest_addresses(record.vpn_id)
    outcome: Outcome = Failed(record.vpn_id, "interrupted")
    try:
        await ctx.wireguard.ensure(link)
        outcome = await request_admission(session, str(guardian.ip), ADMISSION_PORT)
    except WireGuardError as e:
        outcome = Failed(record.vpn_id, f"guest link: {e.message}")
    finally:
        used = await _close_link(ctx, link.name)
        if trace is not None:
            trace.attempted(str(record.vpn_id), describe(outcome), used)
    return outcome


def describe(outcome: Outcome) -> str:
    """One line on how an admission attempt ended; a refusal says why."""
    if isinstance(outcome, Refused):
        return f"refused ({outcome.code}): {outcome.text}"
    if isinstance(outcome, Busy):
        return f"busy ({outcome.reason})"
    if isinstance(outcome, Failed):
        return f"failed: {outcome.reason}"
    return "admitted"


async def _close_link(ctx: NodeContext, name: str) -> int:
    """Remove the guest link; the bytes it carried (0 if it could not be read)."""
    used = 0
    with contextlib.suppress(WireGuardError):
        state = await ctx.wireguard.state(name)
        if state is not None:
            used = sum(p.rx_bytes + p.tx_bytes for p in state.peers)
        await ctx.wireguard.remove(name)
    return used
