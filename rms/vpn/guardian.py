"""A guardian's duties for one VPN: the guest slot, admissions, and the published record.

The guest interface has exactly one peer, the guest slot, whose private key is published in
the VPN's record (DESIGN.md: "a single guest slot whose key is the published guest key"):
whoever holds the record can knock, one at a time, and the admission core decides. The
record is republished every `policy.record_republish_s` and whenever the member count
changes, so the feed says whether the VPN still solicits.
"""

from __future__ import annotations

import asyncio
import contextlib
from ipaddress import IPv6Network
from typing import TYPE_CHECKING

import structlog

from rms.admission.events import GuardianEvent, GuestOffered, GuestRefused, MemberAdmitted
from rms.admission.guardian import Guardian
from rms.admission.server import ADMISSION_PORT, AdmissionServer
from rms.discovery.client import DiscoveryClient, DiscoveryUnavailable
from rms.discovery.record import Charter, RecordBody, sign_record
from rms.membership.issuer import RosterIssuer
from rms.overlay import guest_addresses
from rms.vpn.names import guardian_guest_interface, guest_port
from rms.wg.keys import WgPrivateKey
from rms.wg.model import InterfaceConfig, PeerConfig

if TYPE_CHECKING:
    from rms.vpn.membership import Membership

PUBLISH_RETRY_S = 5.0
log = structlog.get_logger("rms.vpn")


class GuardianDuty:
    """Keeps the guest slot open, admits newcomers and publishes the VPN's record."""

    def __init__(
        self,
        membership: Membership,
        charter: Charter,
        issuer: RosterIssuer,
        *,
        guest_interface_key: WgPrivateKey,
        guest_slot_key: WgPrivateKey,
        discovery: DiscoveryClient | None,
    ) -> None:
        self.membership = membership
        self.ctx = membership.ctx
        self.charter = charter
        self.guest_interface_key = guest_interface_key
        self.guest_slot_key = guest_slot_key
        self.discovery = discovery
        self.core = Guardian(self.ctx.identity, issuer, policy=self.ctx.policy)
        self.server = AdmissionServer(self.core, on_event=self._on_event)
        self.interface = guardian_guest_interface(membership.vpn_id)
        self.published_seq = 0
        self.publish_problem: str | None = None
        self._republish = asyncio.Event()
        self._log = log.bind(vpn=str(membership.vpn_id))

    def guest_config(self) -> InterfaceConfig:
        """The guest interface: one peer, the published guest slot, allowed one address."""
        mine, guest = guest_addresses(self.membership.vpn_id)
        slot = PeerConfig(
            self.guest_slot_key.public_key(),
            None,
            frozenset({IPv6Network((guest.ip, 128))}),
        )
        return InterfaceConfig(
            self.interface,
            self.guest_interface_key,
            guest_port(self.membership.slot),
            frozenset({mine}),
            (slot,),
        )

    def roster_changed(self) -> None:
        """Members came or went: the record must say so."""
        self._republish.set()

    async def run(self) -> None:
        """Open the guest slot, serve admissions and keep the record published."""
        await self.ctx.wireguard.ensure(self.guest_config())
        mine, _ = guest_addresses(self.membership.vpn_id)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.server.run(str(mine.ip), ADMISSION_PORT), name="admission")
            tg.create_task(self._publish_loop(), name="record-publisher")

    async def close(self) -> None:
        """Close the guest slot."""
        with contextlib.suppress(Exception):
            await self.ctx.wireguard.remove(self.interface)

    def record_body(self) -> RecordBody:
        """What the record says about the VPN now."""
        roster = self.membership.roster
        members = len(roster.members)
        capacity = self.ctx.policy.vpn_capacity
        return RecordBody(
            public_ips=tuple(str(ip) for ip in self.ctx.locality.public_ips),
            guest_port=guest_port(self.membership.slot),
            guest_public_key=self.guest_interface_key.public_key(),
            guest_private_key=self.guest_slot_key,
            soliciting=members < capacity,
            members=members,
            capacity=capacity,
        )

    async def publish(self) -> bool:
        """Sign the record as it is now and hand it to the mirrors; True when one took it."""
        if self.discovery is None:
            self.publish_problem = "no discovery URL configured"
            return False
        record = sign_record(
            self.ctx.identity,
            self.charter,
            self.record_body(),
            now=self.ctx.clock(),
            ttl_s=self.ctx.policy.record_ttl_s,
        )
        try:
            result = await self.discovery.publish(record)
        except DiscoveryUnavailable as e:
            self.publish_problem = f"no mirror took the record: {e}"
            self._log.info("vpn.publish_failed", reason=str(e))
            return False
        self.published_seq = record.seq
        self.publish_problem = None
        self._log.info(
            "vpn.published", seq=record.seq, members=record.members, mirrors=result.accepted
        )
        return True

    async def _publish_loop(self) -> None:
        interval = self.ctx.policy.record_republish_s
        while True:
            ok = await self.publish()
            self._republish.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval if ok else PUBLISH_RETRY_S):
                    await self._republish.wait()

    def _on_event(self, event: GuardianEvent) -> None:
        if isinstance(event, GuestOffered):
            self._log.info("vpn.offered", member=event.member.node_id.hex()[:16])
            self.membership.roster_changed()
            self._republish.set()
        elif isinstance(event, MemberAdmitted):
            self._log.info("vpn.admitted", member=event.member.node_id.hex()[:16])
        elif isinstance(event, GuestRefused):
            self._log.info("vpn.refused", code=event.refusal.code)
