"""One management VPN this node belongs to: its WireGuard interface, roster sync and duties.

The roster decides the interface: every other member with a known endpoint becomes a peer
whose only allowed IP is its management address (a /128), so a member can send on the VPN
only as itself. Whenever a new roster version is held, the interface is reconciled to it
through the WireGuard manager, which applies only the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Interface, IPv6Network
from typing import TYPE_CHECKING, Any

import structlog

from rms.identity import NodeIdentity
from rms.membership.events import NoLongerMember, RosterAccepted, SyncOutput
from rms.membership.issuer import RosterIssuer
from rms.membership.ledger import RosterLedger
from rms.membership.roster import Member, Roster
from rms.membership.service import RPC_PORT, RosterSyncService, member_rpc_address
from rms.membership.sync import RosterSync
from rms.overlay import member_address
from rms.policy import Policy
from rms.vpn.locality import Locality
from rms.vpn.names import management_interface, management_port
from rms.vpn.trace import JoinTrace
from rms.wg.keys import WgPrivateKey
from rms.wg.manager import WireGuard
from rms.wg.model import Endpoint as WgEndpoint
from rms.wg.model import InterfaceConfig, InterfaceState, PeerConfig

if TYPE_CHECKING:
    from rms.vpn.guardian import GuardianDuty

KEEPALIVE_S = 25  # keeps NAT mappings open (the WireGuard paper, section 6.5)
BIND_RETRIES = 20
BIND_RETRY_S = 0.25
OBSERVE_S = 5.0
OBSERVE_FAST_S = 0.2
ROTATE_SWITCH_S = 2.0  # time for a rotation request to reach the guardians
ROTATE_CONFIRM_S = 30.0  # a new key no roster shows by then is given up

log = structlog.get_logger("rms.vpn")


class MembershipEnded(Exception):
    """The roster no longer lists this node: the membership is over."""

    def __init__(self, vpn_id: uuid.UUID) -> None:
        super().__init__(f"no longer a member of {vpn_id}")
        self.vpn_id = vpn_id


@dataclass(frozen=True)
class NodeContext:
    """What every VPN of this node shares."""

    identity: NodeIdentity
    wireguard: WireGuard
    locality: Locality
    policy: Policy
    clock: Callable[[], float] = time.time


def peer_configs(roster: Roster, me: bytes) -> tuple[PeerConfig, ...]:
    """Every other member that said where it listens, allowed to send only as itself."""
    peers = []
    for member in roster.members:
        if member.node_key == me or member.endpoint is None:
            continue
        endpoint = WgEndpoint(member.endpoint.ip, member.endpoint.port)
        allowed = frozenset({IPv6Network((member.address, 128))})
        peers.append(PeerConfig(member.wg_public_key, endpoint, allowed, KEEPALIVE_S))
    return tuple(peers)


def interface_config(
    vpn_id: uuid.UUID, slot: int, key: WgPrivateKey, roster: Roster, identity: NodeIdentity
) -> InterfaceConfig:
    """The management interface as the roster says it should be."""
    address = member_address(vpn_id, identity.node_id)
    return InterfaceConfig(
        management_interface(vpn_id),
        key,
        management_port(slot),
        frozenset({address}),
        peer_configs(roster, identity.public_key),
    )


class Membership:
    """Runs one VPN: reconciles its interface, serves roster RPC, and its guardian duty."""

    def __init__(
        self,
        ctx: NodeContext,
        ledger: RosterLedger,
        *,
        slot: int,
        wg_key: WgPrivateKey,
        issuer: RosterIssuer | None = None,
    ) -> None:
        self.ctx = ctx
        self.ledger = ledger
        self.vpn_id = ledger.vpn_id
        self.slot = slot
        self.wg_key = wg_key
        self.guardian: GuardianDuty | None = None
        now = ctx.clock()
        self.sync = RosterSync(
            ctx.identity, ledger, rng=random.SystemRandom(), now=now, issuer=issuer
        )
        self.service = RosterSyncService(
            self.sync, address_of=member_rpc_address(self.vpn_id), on_event=self._on_sync_event
        )
        self.address: IPv6Interface = member_address(self.vpn_id, ctx.identity.node_id)
        self.interface = management_interface(self.vpn_id)
        self.last_state: InterfaceState | None = None
        self.created_at = ctx.clock()
        self.trace: JoinTrace | None = None  # how we joined, when we did through admission
        self.pending_key: WgPrivateKey | None = None  # asked for, not yet in the roster
        self.on_change: Callable[[Membership], None] | None = None  # to save it to disk
        self._dirty = asyncio.Event()
        self._ended = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._log = log.bind(vpn=str(self.vpn_id))

    @property
    def role(self) -> str:
        """`guardian` or `member`."""
        return "guardian" if self.guardian is not None else "member"

    def interfaces(self) -> list[str]:
        """The WireGuard interfaces this membership owns."""
        names = [self.interface]
        if self.guardian is not None:
            names.append(self.guardian.interface)
        return names

    def solicits(self) -> bool:
        """Whether the VPN still has room for members."""
        return len(self.roster.members) < self.ctx.policy.vpn_capacity

    @property
    def roster(self) -> Roster:
        """The roster version this node holds."""
        current = self.ledger.current
        if current is None:  # a Membership is only ever made from a held roster
            raise RuntimeError(f"no roster held for {self.vpn_id}")
        return current.roster

    def roster_changed(self) -> None:
        """A new version is held (ours or a peer's): announce it and reconcile the interface."""
        self.service.submit(self.sync.announce(self.ctx.clock()))
        self._changed()

    def _changed(self) -> None:
        self._dirty.set()
        if self.on_change is not None:
            self.on_change(self)

    async def run(self) -> None:
        """Bring the VPN up and keep it as the roster says until cancelled or removed."""
        await self.reconcile()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._serve_rpc(), name=f"vpn-{self.interface}-rpc")
                tg.create_task(self._reconcile_loop(), name=f"vpn-{self.interface}-wg")
                tg.create_task(self._watch_end(), name=f"vpn-{self.interface}-end")
                tg.create_task(self._observe(), name=f"vpn-{self.interface}-observe")
                if self.guardian is not None:
                    tg.create_task(self.guardian.run(), name=f"vpn-{self.interface}-guardian")
        finally:
            self._tg = None
            await self.close()

    def leave(self) -> None:
        """Ask the guardians to remove this node; the membership ends when the roster says so."""
        self.service.submit(self.sync.request_leave(self.ctx.clock()))

    def rotate(self) -> WgPrivateKey:
        """Start changing this node's WireGuard key in the VPN; returns the new key."""
        if self._tg is None:
            raise RuntimeError(f"the VPN {self.vpn_id} is not running")
        key = WgPrivateKey.generate()
        self.pending_key = key
        self._tg.create_task(self._rotation(key), name=f"vpn-{self.interface}-rotate")
        return key

    async def _rotation(self, key: WgPrivateKey) -> None:
        # The request must leave under the old key; the roster that carries the new one can
        # only reach us under the new key (the others reconfigure as soon as they hold it).
        # So: ask, give the request time to arrive, switch, and go back if no roster confirms.
        old = self.wg_key
        self.service.submit(self.sync.request_rotation(key.public_key(), self.ctx.clock()))
        await asyncio.sleep(ROTATE_SWITCH_S)
        if self.pending_key is key:
            self.wg_key = key
            self._changed()
        for _ in range(int(ROTATE_CONFIRM_S)):
            if self.pending_key is not key:
                return
            await asyncio.sleep(1.0)
        self._log.warning("vpn.rotation_unconfirmed", kept="the old key")
        self.wg_key, self.pending_key = old, None
        self._changed()

    def _take_rotated_key(self) -> None:
        me = self.roster.member(self.ctx.identity.public_key)
        pending = self.pending_key
        if pending is not None and me is not None and me.wg_public_key == pending.public_key():
            # Confirmed by the roster (at once for a guardian, which issues it itself).
            self.wg_key, self.pending_key = pending, None
            self._log.info("vpn.key_rotated", public_key=pending.public_key().base64()[:8])

    async def reconcile(self) -> None:
        """Make the interface match the roster held now."""
        self._take_rotated_key()
        config = interface_config(
            self.vpn_id, self.slot, self.wg_key, self.roster, self.ctx.identity
        )
        await self.ctx.wireguard.ensure(config)

    async def close(self) -> None:
        """Remove this VPN's interfaces."""
        with contextlib.suppress(Exception):
            await self.ctx.wireguard.remove(self.interface)
        if self.guardian is not None:
            await self.guardian.close()

    def status(self, now: float) -> dict[str, Any]:
        """This VPN as `rms status` shows it (handshakes as last observed)."""
        roster, state = self.roster, self.last_state
        handshakes = {} if state is None else {p.public_key: p.last_handshake for p in state.peers}
        peers = [_peer_status(m, handshakes, now) for m in roster.members]
        return {
            "uuid": str(self.vpn_id),
            "role": self.role,
            "interface": self.interface,
            "address": str(self.address.ip),
            "members": len(roster.members),
            "roster_seq": roster.seq,
            "peers": [p for p in peers if p["node_id"] != self.ctx.identity.node_id_hex[:16]],
        }

    def _on_sync_event(self, event: SyncOutput) -> None:
        if isinstance(event, RosterAccepted):
            self._changed()
            if self.guardian is not None:
                self.guardian.roster_changed()
        elif isinstance(event, NoLongerMember):
            self._log.info("vpn.no_longer_member")
            self._ended.set()

    async def _serve_rpc(self) -> None:
        # A new address can take a moment to become usable; retry a bind that finds it absent.
        for _ in range(BIND_RETRIES):
            try:
                await self.service.run(str(self.address.ip), RPC_PORT)
                return
            except OSError as e:
                if e.errno != errno.EADDRNOTAVAIL:
                    raise
                await asyncio.sleep(BIND_RETRY_S)
        raise OSError(errno.EADDRNOTAVAIL, f"{self.address.ip} never became usable")

    async def _reconcile_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self.reconcile()

    async def _observe(self) -> None:
        # Status is read synchronously; keep a recent reading of the interface for it. Look
        # often until the first handshake is seen, so a join's trace gets it on time.
        while True:
            state = await self.ctx.wireguard.state(self.interface)
            self.last_state = state
            trace = self.trace
            if trace is not None and state is not None:
                trace.handshake_seen([p.last_handshake for p in state.peers if p.last_handshake])
            waiting = trace is not None and trace.first_handshake_at is None
            await asyncio.sleep(OBSERVE_FAST_S if waiting else OBSERVE_S)

    async def _watch_end(self) -> None:
        await self._ended.wait()
        raise MembershipEnded(self.vpn_id)


def _peer_status(member: Member, handshakes: dict[Any, float | None], now: float) -> dict[str, Any]:
    last = handshakes.get(member.wg_public_key)
    return {
        "node_id": member.node_id.hex()[:16],
        "wg_public_key": member.wg_public_key.base64(),
        "address": str(member.address),
        "endpoint": None if member.endpoint is None else str(member.endpoint),
        "handshake_age_s": None if last is None else round(max(0.0, now - last), 1),
    }
