"""Roster replication over real loopback TCP: the sync core behind its RPC adapter."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from rms.identity import NodeIdentity
from rms.membership.events import RosterAccepted, SyncOutput
from rms.membership.issuer import RosterIssuer
from rms.membership.ledger import RosterLedger
from rms.membership.roster import Endpoint, Member
from rms.membership.service import RosterSyncService, member_rpc_address
from rms.membership.sync import RosterSync
from rms.overlay import member_address
from rms.policy import Policy
from tests.admission_support import GUARDIAN, VPN_ID, found, node, place, wg_key

HOST = "127.0.0.1"
LIVELY = Policy(member_heartbeat_s=0.2, member_probation_s=1.0, member_expiry_s=1.5)


@dataclass
class Cloud:
    """A guardian and its members, each behind its own RPC service on loopback."""

    services: dict[bytes, RosterSyncService] = field(default_factory=dict)
    ports: dict[bytes, int] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def address_of(self, key: bytes) -> tuple[str, int] | None:
        port = self.ports.get(key)
        return None if port is None else (HOST, port)

    def record(self, event: SyncOutput) -> None:
        if isinstance(event, RosterAccepted):
            self.changed.set()

    async def add(self, identity: NodeIdentity, core: RosterSync) -> None:
        service = RosterSyncService(core, address_of=self.address_of, on_event=self.record)
        await service.start(HOST, 0)
        self.services[identity.public_key] = service
        self.ports[identity.public_key] = service.port

    async def settled(self, keys: list[bytes], seq: int, within_s: float = 10) -> None:
        """Wait until every listed node holds version `seq`."""
        async with asyncio.timeout(within_s):
            while any(self.services[k].core.ledger.seq != seq for k in keys):
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def cloud(members: int) -> AsyncIterator[tuple[Cloud, RosterIssuer]]:
    now = time.time()
    vpn = found(LIVELY, now=now)
    ledger, issuer = vpn.ledger, vpn.issuer
    for n in range(1, members + 1):
        issuer.add(
            Member.new(
                VPN_ID,
                node(n).public_key,
                wg_public_key=wg_key(n).public_key(),
                location=place(n),
                network=place(100 + n),
                joined_ms=int(now * 1000),
            ),
            now,
        )
    net = Cloud()
    await net.add(GUARDIAN, sync_core(GUARDIAN, ledger, 0, now, issuer))
    for n in range(1, members + 1):
        own = RosterLedger(VPN_ID, {GUARDIAN.public_key}, LIVELY, ledger.current)
        await net.add(node(n), sync_core(node(n), own, n, now))
    try:
        yield net, issuer
    finally:
        for service in net.services.values():
            await service.close()


def sync_core(
    identity: NodeIdentity,
    ledger: RosterLedger,
    seed: int,
    now: float,
    issuer: RosterIssuer | None = None,
) -> RosterSync:
    return RosterSync(
        identity,
        ledger,
        issuer=issuer,
        rng=random.Random(seed),
        now=now,
        policy=LIVELY,
        gossip_interval_s=0.2,
    )


async def test_requests_and_changes_reach_every_member() -> None:
    async with cloud(3) as (net, issuer):
        start = issuer.current.seq
        two, three = net.services[node(2).public_key], net.services[node(3).public_key]
        two.submit(two.core.request_rotation(wg_key(222).public_key(), time.time()))
        endpoint = Endpoint(IPv4Address("198.18.0.3"), 51820)
        three.submit(three.core.request_endpoint(endpoint, time.time()))
        await net.settled(list(net.services), start + 2)
        final = issuer.current
        assert all(s.core.ledger.current == final for s in net.services.values())
        member_two = final.roster.member(node(2).public_key)
        assert member_two is not None and member_two.wg_public_key == wg_key(222).public_key()


async def test_a_member_that_goes_silent_is_expired_everywhere() -> None:
    async with cloud(3) as (net, issuer):
        start = issuer.current.seq
        await net.services.pop(node(3).public_key).close()
        del net.ports[node(3).public_key]
        await net.settled(list(net.services), start + 1)
        assert not issuer.current.roster.has(node(3).public_key)
        assert all(s.core.ledger.current == issuer.current for s in net.services.values())


def test_member_rpc_address_is_the_management_address() -> None:
    address = member_rpc_address(VPN_ID)(node(4).public_key)
    assert address is not None
    host, port = address
    assert host == str(member_address(VPN_ID, node(4).node_id).ip) and port == 7947
