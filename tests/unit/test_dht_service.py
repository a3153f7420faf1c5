"""The DHT in the daemon: the service over an in-memory UDP network, its control routes,
and node keys that solve the puzzle. No sockets, no sleeping on timers: datagrams are
delivered by the event loop at once and the clock stands still."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from rms.cli.dht import render
from rms.cli.main import main
from rms.dht.control import MAX_BODY, routes
from rms.dht.puzzle import grind_seed, satisfies
from rms.dht.records import parse_record, peer_key, provider_key, record_addresses
from rms.dht.service import DhtService, VpnView, new_node_seed
from rms.identity import NodeIdentity, load, load_or_create, random_seed
from rms.overlay import member_address
from rms.policy import DEFAULT

NOW = 1_800_000_000.0
VPN_A = uuid.UUID(int=0xA)
VPN_B = uuid.UUID(int=0xB)
BITS = DEFAULT.dht_puzzle_bits
T = TypeVar("T")


def identity(seed: int) -> NodeIdentity:
    return NodeIdentity.from_seed(grind_seed(BITS, random.Random(seed).randbytes))


class FakeTransport(asyncio.DatagramTransport):
    """A bound UDP socket of the in-memory network."""

    def __init__(self, net: FakeNet, addr: tuple[str, int]) -> None:
        super().__init__()
        self.net, self.addr = net, addr

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.net.sent += 1
        self.net.deliver(self.addr, (str(addr[0]), int(addr[1])), bytes(data))

    def close(self) -> None:
        self.net.bound.pop(self.addr, None)


class FakeNet:
    """Delivers datagrams between bound addresses through the event loop; drops `lossy`."""

    def __init__(self) -> None:
        self.bound: dict[tuple[str, int], asyncio.DatagramProtocol] = {}
        self.sent = 0
        self.refuse: set[str] = set()  # addresses not up yet
        self.log: list[tuple[tuple[str, int], tuple[str, int], bytes]] = []
        self.now = NOW

    def clock(self) -> float:
        return self.now

    async def run(self, nodes: list[Node], work: Awaitable[T]) -> T:
        """Await `work`, moving the clock on a second at a time while it waits on timers."""
        task = asyncio.ensure_future(work)
        for _ in range(60):
            await settle()
            if task.done():
                break
            self.now += 1.0
            for node in nodes:
                node.service.handle_timer()
        return await task

    async def open(
        self, host: str, port: int, protocol: asyncio.DatagramProtocol
    ) -> asyncio.DatagramTransport:
        if host in self.refuse:
            raise OSError(99, "Cannot assign requested address")
        self.bound[(host, port)] = protocol
        return FakeTransport(self, (host, port))

    def deliver(self, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        self.log.append((src, dst, data))
        protocol = self.bound.get(dst)
        if protocol is not None:
            asyncio.get_running_loop().call_soon(protocol.datagram_received, data, src)


async def settle() -> None:
    """Let every datagram in flight, and those it causes, be delivered."""
    for _ in range(400):
        await asyncio.sleep(0)


class Node:
    """A service with the VPNs it is in, which a test changes at will."""

    def __init__(self, net: FakeNet, seed: int, ident: NodeIdentity | None = None) -> None:
        self.identity = ident or identity(seed)
        self.vpns: dict[uuid.UUID, list[bytes]] = {}
        self.service = DhtService(
            self.identity, self.views, rng=random.Random(seed), clock=net.clock, opener=net.open
        )

    def address(self, vpn: uuid.UUID) -> str:
        return str(member_address(vpn, self.identity.node_id).ip)

    def views(self) -> list[VpnView]:
        return [VpnView(v, self.address(v), tuple(keys)) for v, keys in self.vpns.items()]


def mesh(nodes: list[Node], vpn: uuid.UUID) -> None:
    for node in nodes:
        node.vpns[vpn] = [n.identity.public_key for n in nodes if n is not node]


async def start(nodes: list[Node]) -> None:
    # Bind everyone first (no members yet), then bootstrap: as in the lab, where a member's
    # socket may come up late and the bootstrap is retried.
    members = {id(n): dict(n.vpns) for n in nodes}
    for node in nodes:
        node.vpns = {v: [] for v in node.vpns}
        await node.service.sync()
    for node in nodes:
        node.vpns = members[id(node)]
        await node.service.sync()
        await settle()
    for node in nodes:  # the next round: peer records no one could take yet go out again
        await node.service.sync()
        await settle()


@pytest.fixture
def net() -> FakeNet:
    return FakeNet()


async def test_nodes_across_two_vpns_find_each_others_peer_records(net: FakeNet) -> None:
    a, b, c, d = (Node(net, i) for i in range(1, 5))
    mesh([a, b], VPN_A)
    mesh([b, c, d], VPN_B)  # b bridges; a shares no VPN with c or d
    await start([a, b, c, d])
    try:
        for asker in (a, c, d):
            result = await asker.service.get(peer_key(b.identity.public_key))
            assert result.record is not None
            addrs = record_addresses(parse_record(result.record))
            assert {x.host for x in addrs} == {b.address(VPN_A), b.address(VPN_B)}
        far = await a.service.get(peer_key(d.identity.public_key))
        assert (
            far.record is not None and parse_record(far.record).publisher == d.identity.public_key
        )
        key, found = await a.service.peer(c.identity.node_id)
        assert key == c.identity.public_key and found.record is not None
        status = a.service.status()
        assert status["lookups"]["ok"] >= 3 and status["lookups"]["failed"] == 0
        assert status["routing_table"] >= 1 and status["stored_records"] >= 1
        assert status["listening"] == [f"[{a.address(VPN_A)}]:7947"]
        assert a.service.health() is None
    finally:
        for node in (a, b, c, d):
            node.service.close()
    assert net.bound == {}


async def test_leaving_and_joining_vpns_follows_the_sockets_and_the_peer_record(
    net: FakeNet,
) -> None:
    a, b, c = (Node(net, i) for i in range(11, 14))
    mesh([a, b], VPN_A)
    mesh([b, c], VPN_B)
    await start([a, b, c])
    first = await c.service.get(peer_key(b.identity.public_key))
    assert first.record is not None
    del b.vpns[VPN_A]
    a.vpns[VPN_A] = []
    net.now += 2.0  # a sync later: the new record's seq (milliseconds) is higher
    await b.service.sync()
    assert (b.address(VPN_A), 7947) not in net.bound
    assert [x.vpn for x in b.service.core.config.addresses] == [VPN_B.bytes]
    await settle()
    again = await net.run([a, b, c], c.service.get(peer_key(b.identity.public_key)))
    assert again.record is not None
    newer, older = parse_record(again.record), parse_record(first.record)
    assert newer.seq > older.seq and len(record_addresses(newer)) == 1
    for node in (a, b, c):
        node.service.close()


async def test_an_address_not_up_yet_is_bound_on_a_later_sync(net: FakeNet) -> None:
    a, b = Node(net, 21), Node(net, 22)
    mesh([a, b], VPN_A)
    net.refuse.add(a.address(VPN_A))
    await a.service.sync()
    assert a.service.counters["bind_retries"] == 1 and a.service.core.config.addresses == ()
    net.refuse.clear()
    await start([a, b])
    assert a.service.status()["listening"] == [f"[{a.address(VPN_A)}]:7947"]
    assert (await b.service.get(peer_key(a.identity.public_key))).record is not None
    for node in (a, b):
        node.service.close()


async def test_a_key_that_fails_the_puzzle_is_not_a_contact(net: FakeNet) -> None:
    weak = next(
        NodeIdentity.from_seed(bytes([i]) * 32)
        for i in range(256)
        if not satisfies(NodeIdentity.from_seed(bytes([i]) * 32).public_key, BITS)
    )
    with capture_logs() as logs:
        a, b = Node(net, 31, weak), Node(net, 32)
    assert [e["event"] for e in logs] == ["dht.key_fails_puzzle"]
    mesh([a, b], VPN_A)
    await start([a, b])
    assert a.service.health() is not None and "node.key" in str(a.service.health())
    assert b.service.core.counters["puzzle"] >= 1  # b dropped every datagram of a
    assert len(b.service.core.table) == 0
    assert b.service.core.table.get(a.identity.node_id) is None
    for node in (a, b):
        node.service.close()


def test_new_node_keys_solve_the_puzzle_and_old_keys_still_load(tmp_path: Path) -> None:
    made = load_or_create(tmp_path / "new", new_node_seed)
    assert satisfies(made.public_key, BITS)
    assert load_or_create(tmp_path / "new", new_node_seed) == made  # loaded, not re-made
    old = load_or_create(tmp_path / "old", random_seed)
    assert load_or_create(tmp_path / "old", new_node_seed) == old == load(tmp_path / "old/node.key")
    with pytest.raises(ValueError, match="32 bytes"):
        load_or_create(tmp_path / "short", lambda: b"\x00" * 31)
    assert not (tmp_path / "short" / "node.key").exists()


# -- the control API -----------------------------------------------------------------------


async def client_for(nodes: list[Node]) -> TestClient[Any, Any]:
    app = web.Application()
    app.add_routes(routes(nodes[0].service))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_routes_look_up_publish_and_list_records(net: FakeNet) -> None:
    a, b = Node(net, 41), Node(net, 42)
    mesh([a, b], VPN_A)
    await start([a, b])
    client = await client_for([a, b])
    try:
        peer = await client.post("/v1/dht/get", json={"public_key": b.identity.public_key.hex()})
        body = await peer.json()
        assert peer.status == 200 and body["found"] and body["record"]["kind"] == "peer"
        assert body["record"]["fields"]["addrs"] == [[str(VPN_A), b.address(VPN_A), 7947]]
        by_id = await (
            await client.post("/v1/dht/get", json={"node_id": b.identity.node_id_hex})
        ).json()
        assert by_id["found"] and by_id["public_key"] == b.identity.public_key.hex()
        locality = str(uuid.UUID(int=7))
        offer = {"resource": "storage", "amount": 10**12, "localities": [locality]}
        put = await client.post("/v1/dht/provider", json=offer)
        assert put.status == 202 and (await put.json())["stored"] >= 1
        found = await (await client.post("/v1/dht/get", json={"providers": "storage"})).json()
        assert [r["fields"]["localities"] for r in found["records"]] == [[locality]]
        assert found["records"][0]["publisher"] == a.identity.public_key.hex()
        own = await (await client.get("/v1/dht/records")).json()
        assert sorted(r["kind"] for r in own["records"]) == ["peer", "provider"]
        missing = await client.post("/v1/dht/get", json={"key": "00" * 32})
        assert missing.status == 200 and not (await missing.json())["found"]
        assert a.service.status()["lookups"]["failed"] == 1
    finally:
        await client.close()
        for node in (a, b):
            node.service.close()


BAD_GETS = [
    (b"{not json", "not JSON"),
    (b"[" * 3000 + b"]" * 1000, "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b"{}", "exactly one"),
    (json.dumps({"key": "00" * 32, "vpn": str(VPN_A)}).encode(), "exactly one"),
    (json.dumps({"secret": "00" * 32}).encode(), "exactly one"),
    (json.dumps({"key": "zz" * 32}).encode(), "64 hex"),
    (json.dumps({"key": "00" * 31}).encode(), "64 hex"),
    (json.dumps({"public_key": 5}).encode(), "64 hex"),
    (json.dumps({"node_id": None}).encode(), "64 hex"),
    (json.dumps({"providers": "gpu"}).encode(), "providers is one of"),
    (json.dumps({"vpn": "not-a-uuid"}).encode(), "UUID"),
    (json.dumps({"vpn": "a" * 5000}).encode(), ""),
]
BAD_PROVIDERS = [
    (json.dumps({"resource": "gpu", "amount": 1}).encode(), "resource"),
    (json.dumps({"amount": 1}).encode(), "expected"),
    (json.dumps({"resource": "cpu", "amount": -1}).encode(), "amount"),
    (json.dumps({"resource": "cpu", "amount": 2**64}).encode(), "amount"),
    (json.dumps({"resource": "cpu", "amount": True}).encode(), "amount"),
    (json.dumps({"resource": "cpu", "amount": 1, "localities": ["x"]}).encode(), "UUID"),
    (
        json.dumps({"resource": "cpu", "amount": 1, "localities": [str(VPN_A)] * 5}).encode(),
        "at most",
    ),
    (json.dumps({"resource": "cpu", "amount": 1, "publisher": "00" * 32}).encode(), "expected"),
]


@pytest.mark.parametrize(("route", "body", "needle"), [
    *(("/v1/dht/get", b, n) for b, n in BAD_GETS),
    *(("/v1/dht/provider", b, n) for b, n in BAD_PROVIDERS),
])  # fmt: skip
async def test_bad_bodies_are_refused_before_any_lookup(
    net: FakeNet, route: str, body: bytes, needle: str
) -> None:
    a = Node(net, 51)
    client = await client_for([a])
    try:
        resp = await client.post(route, data=body)
        assert resp.status == (413 if len(body) > MAX_BODY else 400)
        assert needle in await resp.text()
        assert a.service.core.ops == {} and a.service.own_records() == []
    finally:
        await client.close()
        a.service.close()


async def test_a_provider_record_changed_within_a_millisecond_still_replaces_the_old(
    net: FakeNet,
) -> None:
    a, b = Node(net, 61), Node(net, 62)
    mesh([a, b], VPN_A)
    await start([a, b])
    first = await a.service.provide("cpu", 1000, [])
    second = await a.service.provide("cpu", 2000, [])  # the clock has not moved
    assert first.stored >= 1 and second.stored >= 1
    found = await b.service.find_records(provider_key("cpu"))
    assert [parse_record(r).fields["amount"] for r in found.records] == [2000]
    for node in (a, b):
        node.service.close()


def test_the_cli_says_what_it_found_and_fails_without_a_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = {
        "found": True,
        "record": {"kind": "peer", "node_id": "ab" * 32, "seq": 5, "fields": {"addrs": [
            [str(VPN_A), "fd00::1", 7947]]}},
        "records": [],
        "rpcs": 3,
        "elapsed_ms": 12.5,
    }  # fmt: skip
    assert render(answer) == [
        f"peer {'ab' * 8} seq 5: [fd00::1]:7947",
        "(3 requests in 12.5 ms)",
    ]
    assert render({"found": False, "record": None, "records": [], "rpcs": 2}) == [
        "not found",
        "(2 requests)",
    ]
    config = tmp_path / "rms.toml"
    config.write_text(f'[control]\nsocket = "{tmp_path / "none.sock"}"\n')
    assert main(["dht", "get", "00" * 32, "--config", str(config)]) == 1
    assert "daemon not running" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["dht", "peer", "xyz"])


async def test_junk_replayed_forged_and_oversized_datagrams_are_dropped(net: FakeNet) -> None:
    a, b = Node(net, 71), Node(net, 72)
    mesh([a, b], VPN_A)
    await start([a, b])
    src, dst, data = next(x for x in net.log if x[1][0] == a.address(VPN_A))
    socket = net.bound[dst]
    forged = data[:-1] + bytes([data[-1] ^ 1])
    before = a.service.core.counters["rejected"]
    for bad in (b"", b"\x00" * 7, b"\xff" * 70_000, data, forged):  # data: a replay
        socket.datagram_received(bad, src)
    socket.datagram_received(data, (f"{src[0]}%eth0", src[1]))  # a zone, and a replay again
    await settle()
    assert a.service.core.counters["rejected"] == before + 6
    found = await a.service.get(peer_key(b.identity.public_key))  # and it still serves
    assert found.record is not None
    for node in (a, b):
        node.service.close()
