"""The UDP adapter over loopback: a request out, delivered, answered, answer back."""

from __future__ import annotations

import asyncio
import random
import socket
import uuid

from rms.gossip import AnswerReceived, Delivered, Gossip, RequestBody
from rms.gossip.adapter import GossipService, member_endpoint
from rms.identity import NodeIdentity

VPN = uuid.UUID(int=9)
NOW = 1_700_000_000.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_request_and_answer_cross_real_sockets() -> None:
    ids = [NodeIdentity.from_seed(bytes([n + 1]) * 32) for n in range(2)]
    ports = {i.public_key: free_port() for i in ids}

    def address_of(vpn_id: uuid.UUID, key: bytes) -> tuple[str, int]:
        return "127.0.0.1", ports[key]

    def clock() -> float:
        return NOW

    events: list[asyncio.Queue[Delivered | AnswerReceived]] = [asyncio.Queue(), asyncio.Queue()]
    services = [
        GossipService(
            Gossip(ident, random.Random(n)),
            events[n].put_nowait,
            address_of=address_of,
            clock=clock,
        )
        for n, ident in enumerate(ids)
    ]
    async with asyncio.timeout(10), asyncio.TaskGroup() as tg:
        tasks = [
            tg.create_task(s.run("127.0.0.1", ports[i.public_key]), name=f"gossip-{n}")
            for n, (s, i) in enumerate(zip(services, ids, strict=True))
        ]
        for s in services:
            s.set_neighbours(VPN, [i.public_key for i in ids])
        for s in services:
            await s.ready.wait()
        services[0].broadcast(RequestBody(b"\x01" * 16, "cpu", 500, 4))
        delivered = await asyncio.wait_for(events[1].get(), 5)
        assert isinstance(delivered, Delivered)
        services[1].answer(delivered.request, {"amount": 250, "addresses": []})
        answered = await asyncio.wait_for(events[0].get(), 5)
        assert isinstance(answered, AnswerReceived)
        assert answered.answer.offer["amount"] == 250
        for task in tasks:
            task.cancel()
    assert all(s._transport is None for s in services)


async def test_datagrams_from_unknown_addresses_are_ignored() -> None:
    ident = NodeIdentity.from_seed(b"z" * 32)
    service = GossipService(Gossip(ident, random.Random(1)), lambda e: None)
    service.datagram_received(b"anything", ("127.0.0.1", 1))
    assert service.unknown_sources == 1
    assert service.core.status()["dropped"] == {}


def test_member_endpoint_is_the_overlay_address() -> None:
    ident = NodeIdentity.from_seed(b"y" * 32)
    host, port = member_endpoint(VPN, ident.public_key)
    assert host.startswith("fd")
    assert port == 7948
