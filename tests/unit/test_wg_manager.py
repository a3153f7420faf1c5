"""WireGuard.ensure/remove/state over the in-memory driver: create once, then only the diff."""

from __future__ import annotations

import asyncio
from ipaddress import ip_interface, ip_network

import pytest
from structlog.testing import capture_logs

from rms.wg.changes import AddAddress, AddPeer, RemovePeer, SetLinkUp, UpdatePeer
from rms.wg.driver import driver_mode, select_driver
from rms.wg.errors import WireGuardError
from rms.wg.fake import FakeDriver
from rms.wg.keys import WgPrivateKey, WgPublicKey
from rms.wg.manager import WireGuard
from rms.wg.model import Endpoint, InterfaceConfig, PeerConfig

NOW = 1_700_000_000.0
KEY = WgPrivateKey(bytes([7]) * 32)
P1, P2, P3 = (WgPublicKey(bytes([i]) * 32) for i in (1, 2, 3))
ME = ip_interface("fd00::1/64")
EP = Endpoint.parse("192.0.2.1:51820")


def peer(key: WgPublicKey, n: int, keepalive: int = 25) -> PeerConfig:
    return PeerConfig(key, EP, frozenset({ip_network(f"fd00::{n}/128")}), keepalive)


def config(*peers: PeerConfig) -> InterfaceConfig:
    return InterfaceConfig("tcm0", KEY, 51820, frozenset({ME}), peers)


def manager() -> tuple[WireGuard, FakeDriver]:
    fake = FakeDriver()
    return WireGuard(fake, clock=lambda: NOW), fake


async def test_first_ensure_creates_then_applies_link_and_peers() -> None:
    wg, fake = manager()
    result = await wg.ensure(config(peer(P1, 1)))
    assert result.created and result.changed
    assert result.changes == (SetLinkUp(), AddAddress(ME), AddPeer(peer(P1, 1)))
    assert [op for op, _, _ in fake.calls] == ["create", "get", "apply"]
    state = await wg.state("tcm0")
    assert state is not None
    assert (state.public_key, state.listen_port, state.up) == (KEY.public_key(), 51820, True)


async def test_ensuring_the_same_config_again_sends_nothing() -> None:
    wg, fake = manager()
    await wg.ensure(config(peer(P1, 1)))
    fake.calls.clear()
    result = await wg.ensure(config(peer(P1, 1)))
    assert not result.changed
    assert [op for op, _, _ in fake.calls] == ["get"]


async def test_a_roster_change_applies_only_the_difference() -> None:
    wg, fake = manager()
    await wg.ensure(config(peer(P1, 1), peer(P2, 2)))
    before = await wg.state("tcm0")
    assert before is not None
    fake.handshake("tcm0", before.peers[0], NOW - 5, rx=1000)
    result = await wg.ensure(config(peer(P1, 1, keepalive=0), peer(P3, 3)))
    assert result.changes == (
        RemovePeer(P2),
        UpdatePeer(P1, persistent_keepalive=0),
        AddPeer(peer(P3, 3)),
    )
    after = await wg.state("tcm0")
    assert after is not None
    kept = after.peer(P1)
    assert kept is not None and (kept.last_handshake, kept.rx_bytes) == (NOW - 5, 1000)


async def test_a_failed_apply_says_what_was_kept() -> None:
    wg, fake = manager()
    await wg.ensure(config())
    fake.failures["apply"] = WireGuardError("tcm0: refused")
    with pytest.raises(WireGuardError, match="left as it is now, the next ensure retries"):
        await wg.ensure(config(peer(P1, 1)))
    assert (await wg.ensure(config(peer(P1, 1)))).changes == (AddPeer(peer(P1, 1)),)


async def test_concurrent_ensures_of_one_interface_create_it_once() -> None:
    wg, fake = manager()
    results = await asyncio.gather(*(wg.ensure(config(peer(P1, 1))) for _ in range(3)))
    assert [r.created for r in results].count(True) == 1
    assert [op for op, _, _ in fake.calls].count("create") == 1
    assert sum(len(r.changes) for r in results) == 3  # link up, address, peer: once


async def test_remove_and_state_of_missing_interfaces() -> None:
    wg, _ = manager()
    assert await wg.state("tcm0") is None
    assert not await wg.remove("tcm0")
    await wg.ensure(config())
    assert await wg.names() == ["tcm0"]
    assert await wg.remove("tcm0")
    assert await wg.state("tcm0") is None
    assert await wg.names() == []


async def test_logs_say_what_changed_and_never_carry_the_private_key() -> None:
    wg, _ = manager()
    with capture_logs() as logs:
        await wg.ensure(config(peer(P1, 1)))
        await wg.ensure(config(peer(P1, 1)))
        await wg.remove("tcm0")
    events = [e["event"] for e in logs]
    assert events == ["wg.ensured", "wg.removed"]
    assert logs[0]["done"][0] == "create"
    text = repr(logs)
    assert KEY.hex() not in text
    assert KEY.raw.hex() not in text
    assert str(KEY.public_key()) not in text  # peers and keys are abbreviated in logs


async def test_modes_are_checked() -> None:
    assert driver_mode("userspace") == "userspace"
    with pytest.raises(WireGuardError, match="auto, kernel, userspace"):
        driver_mode("wireguard")
    with pytest.raises(WireGuardError, match="unknown WireGuard mode"):
        await select_driver("turbo")  # type: ignore[arg-type]
    assert (await select_driver("userspace")).kind == "userspace"
