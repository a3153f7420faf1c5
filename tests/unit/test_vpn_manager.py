"""The VPN manager's decisions, with WireGuard faked (STYLE.md 3: fakes for controllers only).

The real thing runs in tests/lab/test_vpns.py; here: peers from rosters, the guest link, the
founding restraint, rollback protection of records, and join traces.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import uuid
from ipaddress import IPv6Network

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rms.admission.events import Busy, Failed, Refused
from rms.admission.planner import NoVpnFits
from rms.config import Config, DiscoverySection, VpnSection
from rms.discovery.record import RecordBody, VpnRecord, found, sign_record
from rms.identity import NodeIdentity
from rms.membership.issuer import found_roster
from rms.membership.roster import Member, Roster
from rms.policy import DEFAULT
from rms.vpn.join import describe, guardian_endpoint, guest_link
from rms.vpn.locality import resolve
from rms.vpn.manager import VpnManager
from rms.vpn.membership import NodeContext, interface_config, peer_configs
from rms.vpn.names import free_slot, guest_port, is_ours, management_interface, management_port
from rms.vpn.trace import JoinTrace
from rms.wg.fake import FakeDriver
from rms.wg.keys import WgPrivateKey
from rms.wg.manager import WireGuard
from rms.wire.messages.roster import Endpoint

NOW = 1_800_000_000.0


def ident(n: int) -> NodeIdentity:
    return NodeIdentity.from_seed(bytes([n]) * 32)


def context(n: int = 1, clock: float = NOW) -> NodeContext:
    locality = resolve(["198.18.0.11", "2001:2::c612:b"], "here", "isp")
    return NodeContext(ident(n), WireGuard(FakeDriver()), locality, DEFAULT, lambda: clock)


def roster_of(*members: int) -> tuple[uuid.UUID, Roster]:
    vpn = uuid.UUID(int=7)
    key = WgPrivateKey.from_hex(f"{members[0]:02x}" * 32)
    first = found_roster(
        ident(members[0]),
        vpn,
        wg_public_key=key.public_key(),
        location=uuid.UUID(int=1),
        network=uuid.UUID(int=2),
        now=NOW,
        endpoint=Endpoint(ipaddress.ip_address("198.18.0.11"), 51820),
    )
    roster = first.roster
    for n in members[1:]:
        member = Member.new(
            vpn,
            ident(n).public_key,
            wg_public_key=WgPrivateKey.from_hex(f"{n:02x}" * 32).public_key(),
            location=uuid.UUID(int=1),
            network=uuid.UUID(int=3),
            joined_ms=int(NOW * 1000),
            endpoint=None
            if n == 9
            else Endpoint(ipaddress.ip_address(f"198.18.0.{10 + n}"), 51821),
        )
        roster = roster.adding(member, int(NOW * 1000))
    return vpn, roster


def test_peers_are_the_other_members_with_an_endpoint_each_allowed_only_its_address() -> None:
    vpn, roster = roster_of(1, 2, 3, 9)
    peers = peer_configs(roster, ident(2).public_key)
    assert len(peers) == 2  # 1 and 3; 9 has not said where it listens yet
    for peer in peers:
        (allowed,) = peer.allowed_ips
        assert allowed.prefixlen == 128
        assert peer.persistent_keepalive == 25
    config = interface_config(vpn, 1, WgPrivateKey.generate(), roster, ident(2))
    assert config.name == management_interface(vpn) and config.listen_port == management_port(1)
    (address,) = config.addresses
    assert address.network.prefixlen == 64 and address.ip.is_private


def test_names_and_ports() -> None:
    vpn = uuid.UUID("9b154c79-b1eb-8ec7-9443-f5c60476188a")
    assert management_interface(vpn) == "tcm9b154c79" and is_ours("tcm9b154c79")
    assert not is_ours("eth0") and not is_ours("tcmx")
    assert (management_port(0), guest_port(3)) == (51820, 51903)
    assert free_slot({0, 2}) == 1 and free_slot({0, 1, 2, 3}) is None
    with pytest.raises(ValueError, match="slot"):
        management_port(4)


def record(
    founder: int = 5, ips: tuple[str, ...] = ("198.18.0.15",), seq: int | None = None
) -> VpnRecord:
    charter = found(ident(founder), bytes([founder]) * 16)
    body = RecordBody(
        public_ips=ips,
        guest_port=51900,
        guest_public_key=WgPrivateKey.generate().public_key(),
        guest_private_key=WgPrivateKey.generate(),
        soliciting=True,
        members=1,
        capacity=8,
    )
    return sign_record(ident(founder), charter, body, now=NOW, seq=seq)


def test_the_guest_link_reaches_the_guardian_in_our_address_family() -> None:
    rec = record(ips=("2001:db8::5", "198.18.0.15"))
    v4 = guardian_endpoint(rec, (ipaddress.ip_address("198.18.0.11"),))
    assert v4 is not None and str(v4) == "198.18.0.15:51900"
    assert guardian_endpoint(rec, (ipaddress.ip_address("2001:2::1"),)) is not None
    only6 = record(ips=("2001:db8::5",))
    assert guardian_endpoint(only6, (ipaddress.ip_address("198.18.0.11"),)) is None
    link = guest_link(rec, v4)
    (peer,) = link.peers
    assert peer.public_key == rec.guest_public_key and link.private_key == rec.guest_private_key
    assert peer.allowed_ips == frozenset(
        {IPv6Network((next(iter(peer.allowed_ips)).network_address, 128))}
    )


def test_outcomes_say_why() -> None:
    vpn = uuid.UUID(int=1)
    assert describe(Refused(vpn, "network", "too many members from network x")) == (
        "refused (network): too many members from network x"
    )
    assert describe(Busy(vpn, "slot", 2.0)) == "busy (slot)"
    assert describe(Failed(vpn, "no route")) == "failed: no route"


def manager(clock: list[float]) -> VpnManager:
    config = Config(vpn=VpnSection(public_ips=("198.18.0.11",)), discovery=DiscoverySection())
    return VpnManager(config, ident(1), clock=lambda: clock[0])


def test_founding_waits_for_a_second_look() -> None:
    clock = [NOW]
    m = manager(clock)
    ctx = context()
    m._consider_founding(ctx, 0, NoVpnFits(()))
    assert m.founded == 0 and not m.memberships
    clock[0] += 0.5
    m._consider_founding(ctx, 0, NoVpnFits(()))
    assert m.founded == 0  # still inside the random wait
    clock[0] += 10
    m._consider_founding(ctx, 0, NoVpnFits(()))
    assert m.founded == 1
    (membership,) = m.memberships.values()
    assert membership.role == "guardian" and membership.solicits()
    clock[0] += 5
    m._consider_founding(ctx, 1, NoVpnFits(()))
    clock[0] += 9
    m._consider_founding(ctx, 1, NoVpnFits(()))
    assert m.founded == 1, "a guardian of a young VPN with room waits for newcomers"


def test_a_guardian_stops_waiting_when_no_newcomer_comes() -> None:
    clock = [NOW]
    m = manager(clock)
    ctx = NodeContext(
        ident(1), WireGuard(FakeDriver()), context().locality, DEFAULT, lambda: clock[0]
    )
    for step in (0.0, 10.0):  # found the first VPN (the second look comes after the wait)
        clock[0] += step
        m._consider_founding(ctx, 0, NoVpnFits(()))
    assert m.founded == 1
    clock[0] += 31  # nobody came: everyone else is in two VPNs already
    for step in (0.0, 10.0):
        clock[0] += step
        m._consider_founding(ctx, 1, NoVpnFits(()))
    assert m.founded == 2


def test_an_older_record_never_replaces_a_newer_one() -> None:
    clock = [NOW]
    m = manager(clock)
    newer, older = record(seq=20), record(seq=10)
    assert m._remember([newer]) == [newer]
    assert m._remember([older]) == [newer]
    clock[0] += 10_000  # past expiry: forgotten
    assert m._remember([]) == []


def test_a_join_trace_takes_the_first_handshake_after_admission() -> None:
    trace = JoinTrace(started=100.0)
    trace.attempted("abcd" * 9, "busy (slot)", 500)
    trace.attempted("abcd" * 9, "admitted", 2500)
    trace.handshake_seen([101.0])
    assert trace.first_handshake_at is None  # not admitted yet
    trace.admitted_at = 101.5
    trace.handshake_seen([90.0, 101.8, 103.0])
    summary = trace.as_json()
    assert summary["attempts"] == 2 and summary["guest_bytes"] == 3000
    assert summary["admitted_s"] == 1.5 and summary["first_handshake_s"] == 1.8
    assert summary["outcomes"][-1].endswith("admitted")


async def test_leave_and_rotate_routes_refuse_bad_requests() -> None:
    app = web.Application()
    app.add_routes(manager([NOW]).routes())
    async with TestClient(TestServer(app)) as client:
        bad = await client.post("/v1/vpns/not-a-uuid/leave")
        assert bad.status == 400
        unknown = await client.post(f"/v1/vpns/{uuid.UUID(int=9)}/rotate")
        assert unknown.status == 404
        assert "not a member" in await unknown.text()
        wrong_method = await client.get(f"/v1/vpns/{uuid.UUID(int=9)}/leave")
        assert wrong_method.status == 405


def test_the_vpn_command_refuses_a_malformed_id() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rms", "vpn", "leave", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "not a VPN UUID" in done.stderr
