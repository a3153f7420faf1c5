"""How many VPNs a node wants: the core (rms.vpn.want), the manager's use of it with
WireGuard and discovery faked, and the `POST /v1/vpns/want` route with bad input."""

from __future__ import annotations

import asyncio
import json
import uuid
from ipaddress import IPv6Address
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import rms.vpn.manager as manager_module
from rms.admission.planner import NoVpnFits
from rms.cli.status import render_joins
from rms.config import Config, ConfigError, DiscoverySection, VpnSection, load_config
from rms.discovery.client import FetchResult
from rms.identity import NodeIdentity
from rms.overlay import member_address
from rms.policy import DEFAULT, Policy
from rms.vpn.manager import VpnManager
from rms.vpn.want import MAX_BODY_BYTES, MAX_TOWARD, WantedVpns, WantError, WantRequest, parse_want
from tests.unit.test_vpn_manager import context, record

NOW = 1_800_000_000.0


def test_a_node_wants_the_policy_target_unless_told_otherwise() -> None:
    want = WantedVpns(DEFAULT)
    assert (want.value, want.source) == (2, "policy")
    assert want.joins(1) and not want.joins(2)
    assert want.may_found(1) and not want.may_found(2)


def test_the_config_is_bounded_by_the_policy_in_force() -> None:
    assert WantedVpns(DEFAULT, 3).value == 3
    tight = Policy(vpn_target=2, vpn_max=3)
    assert WantedVpns(tight, 4).value == 3  # a signed policy may be tighter than the config
    assert WantedVpns(Policy(vpn_min=2, vpn_target=2), 1).value == 2


def test_beyond_the_target_a_node_joins_but_never_founds() -> None:
    want = WantedVpns(DEFAULT)
    want.set(4, "request")
    assert want.joins(2) and want.joins(3) and not want.joins(4)
    assert not want.may_found(2) and not want.may_found(3)
    # looks again soon while VPNs had room, slowly once none had
    assert want.eager(2, none_fit=False) and not want.eager(2, none_fit=True)
    assert want.eager(1, none_fit=True)  # below the target: always soon (and may found)
    assert not want.eager(4, none_fit=False)


@pytest.mark.parametrize("count", [0, -1, 5, 1_000_000])
def test_a_count_outside_the_policy_is_refused_and_nothing_changes(count: int) -> None:
    want = WantedVpns(DEFAULT)
    with pytest.raises(WantError, match=r"\[1, 4\]"):
        want.set(count, "request")
    assert (want.value, want.source) == (2, "policy")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"\xff\xfe",
        b"[3]",
        b"3",
        b'"3"',
        b"null",
        b'{"vpns": "3"}',
        b'{"vpns": 3.0}',
        b'{"vpns": true}',
        b'{"vpns": null}',
        b'{"vpns": [3]}',
        b'{"vpn": 3}',
        b'{"vpns": 3, "and": 1}',
        b'{"vpns": ' + b"9" * 4000 + b"}",
        b"[" * 1500 + b"]" * 1500,
        b'{"vpns": 3, "toward": ' + b"[" * 790 + b"]" * 790 + b"}",
        json.dumps({"vpns": 3, "toward": ["x" * MAX_BODY_BYTES]}).encode(),
    ],
)
def test_malformed_or_oversized_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(WantError):
        parse_want(body)


def test_a_good_body() -> None:
    assert parse_want(b'{"vpns": 3}') == WantRequest(3)
    assert parse_want(b'{"vpns": 9}') == WantRequest(9)  # in range or not: the policy's to say
    asked = parse_want(b'{"vpns": 3, "toward": ["fd12:3456:789a::1", "fd00::2"]}')
    assert asked.toward == (IPv6Address("fd12:3456:789a::1"), IPv6Address("fd00::2"))


@pytest.mark.parametrize(
    "toward",
    [
        "fd00::1",
        {"a": "fd00::1"},
        [1],
        [None],
        ["not an address"],
        ["198.18.0.7"],
        ["2001:db8::1"],  # a public address: no management VPN holds it
        ["fd00::1%eth0"],
        ["fd00::" + "0:" * 30 + "1"],
        ["fd00::1"] * (MAX_TOWARD + 1),
    ],
)
def test_a_malformed_toward_list_is_refused(toward: object) -> None:
    with pytest.raises(WantError):
        parse_want(json.dumps({"vpns": 3, "toward": toward}).encode())


def test_vpns_toward_wanted_addresses_are_tried_first() -> None:
    a, b, c = record(founder=5), record(founder=6), record(founder=7)
    want = WantedVpns(DEFAULT)
    assert want.rounds([a, b, c]) == [[a, b, c]]
    inside_b = member_address(b.vpn_id, bytes(32)).ip
    want.set(3, "request", [inside_b, IPv6Address("fd99::1")])
    assert want.rounds([a, b, c]) == [[b], [a, c]]
    assert want.status()["toward"] == 2
    want.set(3, "request")  # a later request without addresses forgets them
    assert want.rounds([a, b, c]) == [[a, b, c]]


def test_the_config_key_is_checked(tmp_path: Any) -> None:
    assert VpnSection(want=3).want == 3
    for bad in (-1, 5):
        with pytest.raises(ConfigError, match=r"vpn\.want"):
            VpnSection(want=bad)
    path = tmp_path / "rms.toml"
    path.write_text('[vpn]\nwant = "many"\n')
    with pytest.raises(ConfigError):
        load_config(path, environ={})
    assert load_config(path, environ={"RMS_VPN_WANT": "4"}).vpn.want == 4


# -- the manager, with WireGuard and discovery faked ------------------------------------


class FakeDiscovery:
    """A feed with no VPN in it (every VPN full): what a node wanting more may meet."""

    def __init__(self) -> None:
        self.fetches = 0

    async def fetch(self, n: int | None = None) -> FetchResult:
        self.fetches += 1
        return FetchResult({}, (), ("https://mirror",), ())


def manager(clock: list[float], want: int = 0) -> VpnManager:
    vpn = VpnSection(public_ips=("198.18.0.11",), want=want)
    config = Config(vpn=vpn, discovery=DiscoverySection())
    m = VpnManager(config, NodeIdentity.from_seed(bytes([1]) * 32), clock=lambda: clock[0])
    m._ctx = context(1, clock[0])
    m._discovery = FakeDiscovery()  # type: ignore[assignment]
    return m


def holding(m: VpnManager, count: int) -> None:
    """Pretend the node holds `count` VPNs (only their number matters here)."""
    fakes = {
        uuid.UUID(int=i + 1): SimpleNamespace(slot=i, guardian=None, created_at=NOW)
        for i in range(count)
    }
    m.memberships = fakes  # type: ignore[assignment]


async def test_a_node_at_its_target_wanting_more_looks_but_founds_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [NOW]
    m = manager(clock, want=3)
    holding(m, 2)
    tried: list[int] = []

    async def no_vpn_fits(planner: Any, knock: Any) -> NoVpnFits:
        tried.append(len(m.memberships))
        return NoVpnFits(())

    monkeypatch.setattr(manager_module, "run_admission", no_vpn_fits)
    assert m.want.joins(len(m.memberships))
    for step in (0.0, 10.0, 60.0):  # past the second look and the patience of a guardian
        clock[0] += step
        await m._try_join()
    assert tried == [2, 2, 2] and m.founded == 0 and len(m.memberships) == 2
    assert m._none_fit and not m.want.eager(2, m._none_fit)  # now it looks every 15-30 s


async def test_the_vpns_toward_wanted_addresses_go_first_then_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [NOW]
    m = manager(clock)
    holding(m, 2)
    near, far = record(founder=5), record(founder=6)
    m._remember([near, far])
    m.want.set(3, "request", [member_address(near.vpn_id, bytes(32)).ip])
    rounds: list[int] = []

    async def no_vpn_fits(planner: Any, knock: Any) -> NoVpnFits:
        rounds.append(len(rounds))
        return NoVpnFits(())

    monkeypatch.setattr(manager_module, "run_admission", no_vpn_fits)
    monkeypatch.setattr(m, "_remember", lambda records: [near, far])
    await m._try_join()
    assert rounds == [0, 1]  # the near VPN alone, then the rest


async def test_below_the_target_the_same_node_still_founds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [NOW]
    m = manager(clock, want=3)
    holding(m, 1)

    async def no_vpn_fits(planner: Any, knock: Any) -> NoVpnFits:
        return NoVpnFits(())

    monkeypatch.setattr(manager_module, "run_admission", no_vpn_fits)
    started: list[object] = []
    monkeypatch.setattr(m, "_start", started.append)
    for step in (0.0, 10.0):
        clock[0] += step
        await m._try_join()
    assert m.founded == 1 and len(started) == 1


async def test_a_node_that_has_what_it_wants_does_not_look() -> None:
    m = manager([NOW])
    holding(m, 2)
    loop = asyncio.create_task(m._join_loop())
    await asyncio.sleep(0.05)
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert m._discovery.fetches == 0  # type: ignore[union-attr]


async def test_raising_the_count_wakes_the_loop_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    m = manager([NOW])
    holding(m, 2)
    looked = asyncio.Event()

    async def none(planner: Any, knock: Any) -> NoVpnFits:
        looked.set()
        return NoVpnFits(())

    monkeypatch.setattr(manager_module, "run_admission", none)
    loop = asyncio.create_task(m._join_loop())
    await asyncio.sleep(0.05)
    assert not looked.is_set()  # settled: the next look is 15-30 s away
    m._none_fit = True
    m.want.set(3, "request")
    m.wanted_changed()
    await asyncio.wait_for(looked.wait(), 2)  # not after the settled pause
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert m.join_status()["wanted"] == {
        "count": 3, "source": "request", "target": 2, "max": 4, "toward": 0,
    }  # fmt: skip


# -- the route ----------------------------------------------------------------------------


async def client_of(m: VpnManager) -> TestClient[Any, Any]:
    app = web.Application()
    app.add_routes(m.routes())
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_the_route_raises_the_count_and_says_what_it_holds() -> None:
    m = manager([NOW])
    holding(m, 2)
    client = await client_of(m)
    try:
        for _ in range(2):  # the same request again (a replay) changes nothing more
            answer = await client.post("/v1/vpns/want", json={"vpns": 3})
            assert answer.status == 200
            assert await answer.json() == {
                "count": 3, "source": "request", "target": 2, "max": 4, "toward": 0, "held": 2,
            }  # fmt: skip
        assert m.want.value == 3 and m._wake.is_set()
    finally:
        await client.close()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"vpns": "4"}',
        b'{"vpns": 0}',
        b'{"vpns": 5}',
        b'{"vpns": -3}',
        b'{"vpns": 1e9}',
        b'{"vpns": 3, "x": 1}',
        b"x" * (MAX_BODY_BYTES + 1),
        b"x" * (200 * 1024),
    ],
)
async def test_the_route_refuses_bad_bodies_and_keeps_the_count(body: bytes) -> None:
    m = manager([NOW])
    client = await client_of(m)
    try:
        answer = await client.post("/v1/vpns/want", data=body)
        assert answer.status == 400
        assert "unchanged" in await answer.text()
        assert (m.want.value, m.want.source) == (2, "policy")
        wrong = await client.get("/v1/vpns/want")
        assert wrong.status == 405
    finally:
        await client.close()


def test_rms_status_shows_the_wanted_count() -> None:
    joins = {"founded": 0, "wanted": WantedVpns(DEFAULT).status()}
    assert "  wanted: 2 VPNs (policy; the policy's target 2, max 4)" in render_joins(joins)
    assert not any("wanted" in line for line in render_joins({"wanted": "junk"}))
