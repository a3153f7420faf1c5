"""The VPN manager: the daemon service that keeps the node in 1 to 4 management VPNs.

Its loop (docs/management-vpns.md): while the node is in fewer VPNs than it wants
(`policy.vpn_target`, or more up to `policy.vpn_max`: rms.vpn.want), read the feed, try
the soliciting VPNs that have room (the admission planner picks and backs off), and when
none fits and the node is below the target, found a new VPN — but only after a second look
a random while later, so that nodes starting together do not each found their own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from aiohttp import web

from rms.admission.client import run_admission
from rms.admission.events import Admitted
from rms.admission.planner import AdmissionPlanner, ClockIsOff, Joined, NoVpnFits, trusted_guardians
from rms.config import Config
from rms.discovery.client import DiscoveryClient, DiscoveryError, DiscoveryUnavailable
from rms.discovery.record import VpnRecord, found, supersedes
from rms.gossip.adapter import GossipService
from rms.identity import NodeIdentity
from rms.membership.issuer import RosterIssuer, found_roster
from rms.membership.ledger import RosterLedger
from rms.policy import DEFAULT, Policy
from rms.status import StatusBoard
from rms.vpn.control import routes as control_routes
from rms.vpn.guardian import GuardianDuty
from rms.vpn.join import knock
from rms.vpn.locality import LocalityError, resolve, usable_addresses
from rms.vpn.membership import Membership, MembershipEnded, NodeContext
from rms.vpn.names import free_slot, is_ours, management_port
from rms.vpn.store import MembershipStore, SavedGuardian, SavedVpn
from rms.vpn.trace import KEEP, JoinTrace
from rms.vpn.want import WantedVpns
from rms.wg.errors import WireGuardError
from rms.wg.keys import WgPrivateKey
from rms.wg.manager import WireGuard, open_wireguard
from rms.wire.messages.roster import Endpoint

JOIN_INTERVAL_S = 3.0  # between attempts while below target
SETTLED_INTERVAL_S = 30.0  # between checks once at target
FOUND_JITTER_S = 8.0  # the second look before founding comes this long after, at most
FOUND_PATIENCE_S = 30.0  # a guardian waits this long for newcomers before opening another
STARTUP_GRACE_S = 180.0  # in no VPN for longer than this is a health problem
LEFT_HOLD_S = 600.0  # a VPN this node was told to leave is not joined again for this long

log = structlog.get_logger("rms.vpn")


class VpnManager:
    """Joins, founds and runs this node's management VPNs."""

    def __init__(
        self,
        config: Config,
        identity: NodeIdentity,
        *,
        policy: Policy = DEFAULT,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        gossip: GossipService | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.policy = policy
        self.rng = rng or random.SystemRandom()
        self._clock = clock  # wall-clock: records and rosters carry UNIX times
        self.memberships: dict[uuid.UUID, Membership] = {}
        self.problem: str | None = None
        self.founded = 0
        self._seen: dict[uuid.UUID, VpnRecord] = {}
        self.joins: collections.deque[JoinTrace] = collections.deque(maxlen=KEEP)
        self.last_attempt: JoinTrace | None = None
        self._found_after: float | None = None
        self._left: dict[uuid.UUID, float] = {}
        self._ctx: NodeContext | None = None
        self._discovery: DiscoveryClient | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._started = 0.0
        self._log = log.bind(node_id=identity.node_id_hex[:16])
        self.store = MembershipStore(config.node.state_dir / "vpns", policy)
        self.gossip = gossip  # broadcast follows the rosters: every member is a neighbour
        self.want = WantedVpns(policy, config.vpn.want)
        self._none_fit = False  # beyond the target, the last look found no VPN with room
        self._wake = asyncio.Event()

    def attach(self, board: StatusBoard) -> None:
        """Add the `vpns` section and the membership health check to the status board."""
        board.add_section("vpns", self.status)
        board.add_section("vpn_joins", self.join_status)
        board.add_check("vpn", self.health)

    async def run(self) -> None:
        """Keep the node in its VPNs until cancelled; every VPN interface goes with it."""
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        ctx = await self._context()
        if ctx is None:
            await asyncio.Future()  # misconfigured: report it, never crash the daemon
            return
        self._ctx = ctx
        restored = [m for m in map(self._restore, self.store.load_all()) if m is not None]
        keep = {name for m in restored for name in m.interfaces()}
        await self._clear_leftovers(ctx.wireguard, keep)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for membership in restored:
                    self._start(membership)
                tg.create_task(self._join_loop(), name="vpn-join")
        finally:
            self._tg = None

    async def _context(self) -> NodeContext | None:
        vpn = self.config.vpn
        try:
            # pyroute2's synchronous IPRoute runs its own event loop: not inside this one.
            public_ips = vpn.public_ips or await asyncio.to_thread(detect_public_ips)
            locality = resolve(public_ips, vpn.location, vpn.network)
            self._discovery = self._discovery_client()
            log_dir = self.config.node.state_dir / "log"
            wireguard = await open_wireguard(vpn.backend, log_dir=log_dir)  # type: ignore[arg-type]
        except (LocalityError, DiscoveryError, WireGuardError) as e:
            self.problem = str(e)
            self._log.error("vpn.cannot_start", reason=str(e))
            return None
        return NodeContext(self.identity, wireguard, locality, self.policy)

    def _discovery_client(self) -> DiscoveryClient | None:
        urls = self.config.discovery.urls
        if not urls:
            self.problem = "no discovery URL configured (discovery.urls): cannot join"
            return None
        ca = self.config.discovery.ca_file or None
        return DiscoveryClient(urls, ca_file=ca, rng=self.rng)

    async def _clear_leftovers(self, wireguard: WireGuard, keep: set[str]) -> None:
        # Interfaces of VPNs this node no longer holds (a guest link, a VPN it left while
        # down); those it still holds are taken over as they are and reconciled.
        for name in await wireguard.names():
            if is_ours(name) and name not in keep:
                await wireguard.remove(name)

    def _restore(self, saved: SavedVpn) -> Membership | None:
        """A membership from disk, if the saved roster still lists this node."""
        ctx = self._ctx
        if ctx is None or not saved.roster.roster.has(self.identity.public_key):
            self.store.forget(saved.vpn_id)
            return None
        ledger = RosterLedger(saved.vpn_id, saved.trusted, self.policy, saved.roster)
        guardian = saved.guardian
        issuer = RosterIssuer(ledger, self.identity) if guardian is not None else None
        membership = Membership(ctx, ledger, slot=saved.slot, wg_key=saved.wg_key, issuer=issuer)
        if guardian is not None and issuer is not None:
            membership.guardian = GuardianDuty(
                membership,
                guardian.charter,
                issuer,
                guest_interface_key=guardian.guest_interface_key,
                guest_slot_key=guardian.guest_slot_key,
                discovery=self._discovery,
            )
        self._log.info("vpn.restored", vpn=str(saved.vpn_id), role=membership.role)
        return membership

    def _changed(self, membership: Membership) -> None:
        """A membership's roster or key changed: keep it on disk, tell the broadcast."""
        self._save(membership)
        if self.gossip is not None:
            me = self.identity.public_key
            members = [m.node_key for m in membership.roster.members if m.node_key != me]
            self.gossip.set_neighbours(membership.vpn_id, members)

    def _save(self, membership: Membership) -> None:
        current = membership.ledger.current
        if current is None:
            return
        duty = membership.guardian
        guardian = None
        if duty is not None:
            guardian = SavedGuardian(duty.charter, duty.guest_interface_key, duty.guest_slot_key)
        saved = SavedVpn(
            membership.slot,
            membership.wg_key,
            frozenset(membership.ledger.trusted),
            current,
            guardian,
        )
        try:
            self.store.save(saved)
        except OSError as e:
            self.problem = f"cannot save membership of {membership.vpn_id}: {e.strerror}"

    async def _join_loop(self) -> None:
        while True:
            if self.want.joins(len(self.memberships)) and self._discovery is not None:
                await self._try_join()
            await self._pause()

    async def _pause(self) -> None:
        """Until the next look: short while wanting more, unless beyond the target nothing
        had room; a raised wanted count (`wanted_changed`) ends the pause at once."""
        eager = self.want.eager(len(self.memberships), self._none_fit)
        base = JOIN_INTERVAL_S if eager else SETTLED_INTERVAL_S
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.rng.uniform(base / 2, base))

    async def _try_join(self) -> None:
        ctx, discovery = self._ctx, self._discovery
        if ctx is None or discovery is None:
            return
        slot = free_slot({m.slot for m in self.memberships.values()})
        if slot is None:
            return
        trace = JoinTrace(started=self._clock())
        self.last_attempt = trace
        try:
            fetched = await discovery.fetch()
        except DiscoveryUnavailable as e:
            self.problem = f"discovery feed unavailable: {e}"
            return
        self.problem = None
        candidates = self._remember(fetched.records.values())
        now = self._clock()
        self._left = {v: until for v, until in self._left.items() if until > now}
        exclude = set(self.memberships) | set(self._left)
        for group in self.want.rounds(candidates):  # VPNs toward wanted addresses first
            planner = AdmissionPlanner(group, rng=self.rng, policy=self.policy, exclude=exclude)
            result = await run_admission(planner, lambda record: knock(ctx, record, slot, trace))
            if not isinstance(result, NoVpnFits):
                break
        self._none_fit = isinstance(result, NoVpnFits)
        if isinstance(result, Joined):
            self._found_after = None
            trace.vpn_id, trace.admitted_at = str(result.admitted.vpn_id), self._clock()
            self.joins.append(trace)
            self._adopt(ctx, result.admitted, slot, trace)
        elif isinstance(result, NoVpnFits):
            self._consider_founding(ctx, slot, result)
        elif isinstance(result, ClockIsOff):
            self.problem = f"this node's clock is off: {result.refused.text}"

    def _remember(self, records: Iterable[VpnRecord]) -> list[VpnRecord]:
        """The newest record of each VPN seen so far: a mirror cannot roll one back."""
        for record in records:
            kept = self._seen.get(record.vpn_id)
            if kept is None or supersedes(record, kept):
                self._seen[record.vpn_id] = record
        now_ms = int(self._clock() * 1000)
        self._seen = {k: r for k, r in self._seen.items() if r.expires_at > now_ms}
        return list(self._seen.values())

    def _adopt(self, ctx: NodeContext, admitted: Admitted, slot: int, trace: JoinTrace) -> None:
        record = self._seen[admitted.vpn_id]
        ledger = RosterLedger(
            admitted.vpn_id, trusted_guardians(record), self.policy, admitted.roster
        )
        membership = Membership(ctx, ledger, slot=slot, wg_key=admitted.wg_private_key)
        membership.trace = trace
        self._log.info(
            "vpn.joined", vpn=str(admitted.vpn_id), members=len(admitted.roster.roster.members)
        )
        self._start(membership)

    def _consider_founding(self, ctx: NodeContext, slot: int, result: NoVpnFits) -> None:
        if not self.want.may_found(len(self.memberships)):
            return  # beyond the target a node only joins: a VPN of one reaches nobody
        now = self._clock()
        if any(self._awaiting_newcomers(m, now) for m in self.memberships.values()):
            return  # our young VPN still has room: let others come before opening another
        if self._found_after is None:
            self._found_after = now + self.rng.uniform(1.0, FOUND_JITTER_S)
            self._log.info("vpn.none_fits", tried=len(result.tried))
            return
        if now >= self._found_after:
            self._found_after = None
            self._found(ctx, slot)

    def _awaiting_newcomers(self, membership: Membership, now: float) -> bool:
        """A VPN we guard that has room and was opened recently enough to expect newcomers."""
        young = now - membership.created_at < FOUND_PATIENCE_S
        return membership.guardian is not None and membership.solicits() and young

    def _found(self, ctx: NodeContext, slot: int) -> None:
        """Open a new VPN with this node as founder, guardian and only member."""
        charter = found(self.identity, os.urandom(16))
        key = WgPrivateKey.generate()
        own = ctx.locality.public_ips[0]
        roster = found_roster(
            self.identity,
            charter.vpn_id,
            wg_public_key=key.public_key(),
            location=ctx.locality.location,
            network=ctx.locality.network,
            now=self._clock(),
            endpoint=Endpoint(own, management_port(slot)),
            policy=self.policy,
        )
        ledger = RosterLedger(charter.vpn_id, {self.identity.public_key}, self.policy, roster)
        issuer = RosterIssuer(ledger, self.identity)
        membership = Membership(ctx, ledger, slot=slot, wg_key=key, issuer=issuer)
        membership.guardian = GuardianDuty(
            membership,
            charter,
            issuer,
            guest_interface_key=WgPrivateKey.generate(),
            guest_slot_key=WgPrivateKey.generate(),
            discovery=self._discovery,
        )
        self.founded += 1
        self._log.info("vpn.founded", vpn=str(charter.vpn_id))
        self._start(membership)

    def _start(self, membership: Membership) -> None:
        self.memberships[membership.vpn_id] = membership
        membership.on_change = self._changed
        self._changed(membership)
        if self._tg is not None:
            self._tg.create_task(
                self._run_membership(membership), name=f"vpn-{membership.interface}"
            )

    async def _run_membership(self, membership: Membership) -> None:
        try:
            await membership.run()
        except* MembershipEnded:
            self.store.forget(membership.vpn_id)
        except* (WireGuardError, OSError) as group:
            reason = "; ".join(str(e) for e in group.exceptions)
            self.problem = f"VPN {membership.vpn_id} failed: {reason}"
            self._log.error("vpn.failed", vpn=str(membership.vpn_id), reason=reason)
            self.store.forget(membership.vpn_id)
        finally:
            # Cancelled (the daemon stops): the file stays, the next start takes it up again.
            self.memberships.pop(membership.vpn_id, None)
            if self.gossip is not None:
                self.gossip.set_neighbours(membership.vpn_id, [])

    def status(self) -> list[dict[str, Any]]:
        """The `vpns` section of `rms status`."""
        now = self._clock()
        return [m.status(now) for m in self.memberships.values()]

    def membership(self, vpn_id: uuid.UUID) -> Membership:
        """The membership of that VPN; KeyError when this node is not in it."""
        return self.memberships[vpn_id]

    def routes(self) -> list[web.RouteDef]:
        """The control API routes of the manager (rms.vpn.control)."""
        return control_routes(self)

    def leave(self, membership: Membership) -> None:
        """Ask to leave that VPN; it is not joined again for LEFT_HOLD_S (ValueError: guardian)."""
        membership.leave()
        self._left[membership.vpn_id] = self._clock() + LEFT_HOLD_S

    def wanted_changed(self) -> None:
        """The wanted count changed: look for a VPN at once instead of at the next check."""
        self._log.info("vpn.wanted", count=self.want.value, held=len(self.memberships))
        self._none_fit = False
        self._wake.set()

    def join_status(self) -> dict[str, Any]:
        """The `vpn_joins` section: recent joins, and how the latest attempt went."""
        last = self.last_attempt
        return {
            "founded": self.founded,
            "wanted": self.want.status(),
            "joins": [t.as_json() for t in self.joins],
            "last_attempt": None if last is None else last.as_json(),
            "problem": self.problem,
        }

    def health(self) -> str | None:
        """A problem when the node is in no VPN after its grace period, or cannot join at all."""
        if self.memberships:
            return None
        if self._ctx is None and self.problem:
            return self.problem
        waited = asyncio.get_running_loop().time() - self._started
        if waited > STARTUP_GRACE_S:
            return self.problem or f"in no management VPN after {waited:.0f} s"
        return None


def detect_public_ips() -> tuple[str, ...]:
    """Addresses of this host that peers could reach (no loopback, link-local or overlay)."""
    from pyroute2 import IPRoute  # noqa: PLC0415 - netlink only when nothing is configured

    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        found_ips = [
            str(msg.get_attr("IFA_ADDRESS"))
            for msg in ipr.get_addr()
            if not is_ours(str(names.get(msg["index"], "")))
        ]
    return tuple(usable_addresses(found_ips))
