"""The kernel backend's translations, against fakes of pyroute2 (no kernel WireGuard here).

What the kernel would answer is built with pyroute2's own WireGuard message codec, so the
parsing is checked against real message layouts; the kernel itself is not exercised (see
docs/wireguard.md for what that leaves untested).
"""

from __future__ import annotations

import base64
import errno
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from ipaddress import ip_interface, ip_network
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic.wireguard import wgmsg

from rms.wg.changes import (
    AddAddress,
    AddPeer,
    RemovePeer,
    SetLinkUp,
    SetListenPort,
    SetPrivateKey,
    UpdatePeer,
)
from rms.wg.errors import InterfaceNotFound, WireGuardError, WireGuardUnavailable
from rms.wg.kernel import KernelDriver, netlink_requests, state_from_messages
from rms.wg.keys import WgPrivateKey, WgPublicKey
from rms.wg.links import Links
from rms.wg.model import Endpoint, PeerConfig, PeerState

PRIV = WgPrivateKey(bytes(range(32)))
PRIV_B64 = base64.b64encode(PRIV.raw).decode()
A = WgPublicKey(bytes([0xAA] * 32))
B = WgPublicKey(bytes([0xBB] * 32))
NET = ip_network("fd00::/64")


def test_a_change_list_becomes_one_device_set_and_one_set_per_peer() -> None:
    changes = (
        SetPrivateKey(PRIV),
        SetListenPort(51820),
        RemovePeer(A),
        UpdatePeer(B, Endpoint.parse("[2001:db8::1]:1"), frozenset(), 0),
        AddPeer(PeerConfig(A, None, frozenset({NET}), 25)),
    )
    assert netlink_requests(changes) == [
        {"private_key": PRIV_B64, "listen_port": 51820},
        {"peer": {"public_key": A.base64(), "remove": True}},
        {
            "peer": {
                "public_key": B.base64(),
                "update_only": True,
                "persistent_keepalive": 0,
                "endpoint_addr": "2001:db8::1",
                "endpoint_port": 1,
                "replace_allowed_ips": True,
                "allowed_ips": [],
            }
        },
        {
            "peer": {
                "public_key": A.base64(),
                "persistent_keepalive": 25,
                "replace_allowed_ips": True,
                "allowed_ips": ["fd00::/64"],
            }
        },
    ]


def test_an_update_of_one_field_sends_one_field() -> None:
    assert netlink_requests((UpdatePeer(A, persistent_keepalive=5),)) == [
        {"peer": {"public_key": A.base64(), "update_only": True, "persistent_keepalive": 5}}
    ]


def kernel_message(*attrs: list[Any]) -> Any:
    """A WG_CMD_GET_DEVICE answer as the kernel sends it, decoded by pyroute2."""
    msg = wgmsg()
    msg["cmd"], msg["version"] = 0, 1
    msg["attrs"] = list(attrs)
    msg.encode()
    decoded = wgmsg(msg.data)
    decoded.decode()
    return decoded


def allowed(net: str) -> dict[str, Any]:
    addr, mask = net.split("/")
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    return {
        "attrs": [
            ["WGALLOWEDIP_A_FAMILY", family],
            ["WGALLOWEDIP_A_IPADDR", socket.inet_pton(family, addr)],
            ["WGALLOWEDIP_A_CIDR_MASK", int(mask)],
        ]
    }


def test_state_from_a_dump_that_continues_a_peer_in_a_second_message() -> None:
    first = kernel_message(
        ["WGDEVICE_A_IFNAME", "wg0"],
        ["WGDEVICE_A_PRIVATE_KEY", PRIV_B64],
        ["WGDEVICE_A_PUBLIC_KEY", PRIV.public_key().base64()],
        ["WGDEVICE_A_LISTEN_PORT", 51820],
        [
            "WGDEVICE_A_PEERS",
            [
                {
                    "attrs": [
                        ["WGPEER_A_PUBLIC_KEY", A.base64()],
                        ["WGPEER_A_ENDPOINT", {"addr": "192.0.2.1", "port": 51821}],
                        ["WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", 25],
                        ["WGPEER_A_LAST_HANDSHAKE_TIME", {"tv_sec": 1_700_000_000, "tv_nsec": 0}],
                        ["WGPEER_A_RX_BYTES", 10],
                        ["WGPEER_A_TX_BYTES", 20],
                        ["WGPEER_A_ALLOWEDIPS", [allowed("fd00::/64")]],
                    ]
                }
            ],
        ],
    )
    second = kernel_message(
        ["WGDEVICE_A_IFNAME", "wg0"],
        [
            "WGDEVICE_A_PEERS",
            [
                {
                    "attrs": [
                        ["WGPEER_A_PUBLIC_KEY", A.base64()],
                        ["WGPEER_A_ALLOWEDIPS", [allowed("10.0.0.0/8")]],
                    ]
                },
                {"attrs": [["WGPEER_A_PUBLIC_KEY", B.base64()]]},
            ],
        ],
    )
    state = state_from_messages("wg0", [first, second])
    assert state.public_key == PRIV.public_key()
    assert state.listen_port == 51820
    assert state.peers == (
        PeerState(
            A,
            Endpoint.parse("192.0.2.1:51821"),
            frozenset({NET, ip_network("10.0.0.0/8")}),
            25,
            1_700_000_000.0,
            10,
            20,
        ),
        PeerState(B),
    )


class Msg(dict[str, Any]):
    """An rtnetlink message as far as rms.wg.links reads one."""

    def get_nested(self, *path: str) -> Any:
        return self.get("kind") if path[-1] == "IFLA_INFO_KIND" else None


@dataclass
class World:
    """The links of one fake network namespace."""

    kernel_wireguard: bool = True
    links: dict[str, Msg] = field(default_factory=dict)
    addresses: dict[int, set[str]] = field(default_factory=dict)


class FakeIPRoute:
    """The corner of pyroute2.AsyncIPRoute that rms.wg.links uses."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def __aenter__(self) -> FakeIPRoute:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def link_lookup(self, ifname: str) -> list[int]:
        link = self.world.links.get(ifname)
        return [] if link is None else [link["index"]]

    async def link(self, command: str, **kw: Any) -> Any:
        if command == "dump":
            return self._dump_links(list(self.world.links.values()))
        by_index = {m["index"]: m for m in self.world.links.values()}
        if command == "add":
            if kw["kind"] == "wireguard" and not self.world.kernel_wireguard:
                raise NetlinkError(errno.EOPNOTSUPP)
            index = len(self.world.links) + 2
            self.world.links[kw["ifname"]] = Msg(index=index, flags=0, kind=kw["kind"])
            self.world.links[kw["ifname"]]["ifname"] = kw["ifname"]
        elif command == "del":
            name = by_index[kw["index"]]["ifname"]
            del self.world.links[name]
        elif command == "set":
            by_index[kw["index"]]["flags"] |= 1
        elif command == "get":
            return [by_index[kw["index"]]]
        return []

    async def addr(self, command: str, **kw: Any) -> AsyncIterator[Msg]:
        have = self.world.addresses.setdefault(kw["index"], set())
        if command == "add":
            have.add(f"{kw['address']}/{kw['prefixlen']}")
        elif command == "del":
            have.discard(f"{kw['address']}/{kw['prefixlen']}")
        return self._dump(sorted(have))

    async def _dump_links(self, links: list[Msg]) -> AsyncIterator[Msg]:
        for link in links:
            yield link

    async def _dump(self, addresses: list[str]) -> AsyncIterator[Msg]:
        for text in addresses:
            address, prefixlen = text.split("/")
            yield Msg(IFA_ADDRESS=address, prefixlen=int(prefixlen))


@dataclass
class FakeWireGuard:
    """The corner of pyroute2's AsyncWireGuard the kernel backend uses."""

    sets: list[tuple[str, dict[str, Any]]]
    answer: list[Any] = field(default_factory=list)
    set_error: Exception | None = None
    bind_error: Exception | None = None

    async def __aenter__(self) -> FakeWireGuard:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def setup_endpoint(self) -> None:
        if self.bind_error is not None:
            raise self.bind_error

    async def set(self, interface: str, **kw: Any) -> None:
        self.sets.append((interface, kw))
        if self.set_error is not None:
            raise self.set_error

    async def info(self, interface: str) -> AsyncIterator[Any]:
        return self._answer()

    async def _answer(self) -> AsyncIterator[Any]:
        for msg in self.answer:
            yield msg


def driver(world: World, wg: FakeWireGuard) -> KernelDriver:
    return KernelDriver(links=Links(lambda: FakeIPRoute(world)), wireguard=lambda: wg)


async def test_create_apply_get_delete_through_the_fakes() -> None:
    world, sets = World(), list[tuple[str, dict[str, Any]]]()
    wg = FakeWireGuard(sets)
    kd = driver(world, wg)
    await kd.create("wg0", PRIV, 51820)
    assert sets == [("wg0", {"private_key": PRIV_B64, "listen_port": 51820})]
    assert await kd.exists("wg0")
    assert await kd.names() == ["wg0"]
    me = ip_interface("fd00::1/64")
    await kd.apply("wg0", (RemovePeer(A), SetLinkUp(), AddAddress(me)))
    assert sets[-1] == ("wg0", {"peer": {"public_key": A.base64(), "remove": True}})
    wg.answer = [kernel_message(["WGDEVICE_A_PUBLIC_KEY", PRIV.public_key().base64()])]
    state = await kd.get("wg0")
    assert (state.public_key, state.up, state.addresses) == (
        PRIV.public_key(),
        True,
        frozenset({me}),
    )
    assert await kd.delete("wg0")
    assert not await kd.delete("wg0")
    with pytest.raises(InterfaceNotFound):
        await kd.get("wg0")


async def test_no_kernel_module_is_a_clear_error() -> None:
    kd = driver(World(kernel_wireguard=False), FakeWireGuard([]))
    with pytest.raises(WireGuardUnavailable, match="kernel WireGuard is not available"):
        await kd.create("wg0", PRIV, 0)
    with pytest.raises(WireGuardUnavailable):
        await kd.probe()


async def test_no_generic_netlink_family_is_a_clear_error() -> None:
    world = World()
    kd = driver(world, FakeWireGuard([], bind_error=NetlinkError(errno.ENOENT)))
    with pytest.raises(WireGuardUnavailable, match="generic netlink"):
        await kd.create("wg0", PRIV, 0)
    assert world.links == {}, "a failed create removes the link it made"


async def test_a_refused_set_names_the_change_but_never_the_key() -> None:
    world = World()
    kd = driver(world, FakeWireGuard([], set_error=NetlinkError(errno.EADDRINUSE)))
    with pytest.raises(WireGuardError) as caught:
        await kd.create("wg0", PRIV, 51820)
    text = str(caught.value)
    assert "EADDRINUSE" in text and "set listen port 51820" in text
    assert PRIV_B64 not in text and PRIV.hex() not in text
    assert world.links == {}


async def test_pyroute2_value_errors_are_not_quoted() -> None:
    kd = driver(World(), FakeWireGuard([], set_error=ValueError(f"bad key {PRIV_B64}")))
    with pytest.raises(WireGuardError) as caught:
        await kd.create("wg0", PRIV, 0)
    assert PRIV_B64 not in str(caught.value)
