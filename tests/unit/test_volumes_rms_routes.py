"""The RMS routes local services use for volumes: the request long poll, answering, the
answers to one's own request, and published status sections; every bad input refused."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rms.cli.status import render_table, render_volumes
from rms.control.sections import MAX_SECTION_BYTES, STALE_AFTER_S, PublishedSections
from rms.gossip import RequestBody, make_request
from rms.gossip.adapter import GossipService
from rms.gossip.control import routes as broadcast_routes
from rms.gossip.core import Gossip
from rms.gossip.events import AnswerReceived, Delivered, Send
from rms.gossip.exchange import Exchange
from rms.gossip.inbox import Inbox
from rms.identity import NodeIdentity
from rms.status import StatusBoard
from rms.volumes import Offer, OfferTerms, RequestTerms
from tests.unit.volumes_support import CLIENT, Wire, pair
from tests.unit.volumes_support import NOW as LEASE_NOW

NOW = 1_800_000_000.0
VPN = uuid.UUID(int=7)
ASKER = NodeIdentity.from_seed(b"\x0a" * 32)
PROVIDER = NodeIdentity.from_seed(b"\x0b" * 32)
TERMS = RequestTerms(8, b"l" * 16, b"n" * 16).pack()


@dataclass
class Node:
    """One RMS's broadcast pieces and a test client on its routes."""

    core: Gossip
    exchange: Exchange
    wire: Wire
    http: TestClient[Any, Any]

    def take(self) -> list[bytes]:
        sent, self.wire.sent = self.wire.sent, []
        return sent


@asynccontextmanager
async def node(identity: NodeIdentity, peer: NodeIdentity) -> AsyncIterator[Node]:
    core = Gossip(identity, random.Random(identity.public_key), now=NOW)
    core.set_neighbours(VPN, [peer.public_key])
    exchange: Exchange

    def heard(event: Delivered | AnswerReceived) -> None:
        exchange.heard(event)

    service = GossipService(core, heard, clock=lambda: NOW)
    exchange = Exchange(service, Inbox(), clock=lambda: NOW)
    wire = Wire()
    service.connection_made(wire)
    app = web.Application()
    app.add_routes(broadcast_routes(service, exchange.inbox.own_request))
    app.add_routes(exchange.routes())
    async with TestClient(TestServer(app)) as http:
        yield Node(core, exchange, wire, http)
    service.close()


def deliver(frames: list[bytes], to: Node, sender: NodeIdentity) -> None:
    for frame in frames:
        outputs = to.core.datagram_received(frame, sender.public_key, VPN, NOW)
        for out in outputs:
            if isinstance(out, Delivered | AnswerReceived):
                to.exchange.heard(out)
            elif isinstance(out, Send):
                to.wire.sent.append(out.data)


async def broadcast(asker: Node, **extra: object) -> str:
    body = {"kind": "storage", "amount": 2**26, "terms": base64.b64encode(TERMS).decode()}
    resp = await asker.http.post("/v1/broadcast", json={**body, **extra})
    assert resp.status == 202, await resp.text()
    request_id: str = (await resp.json())["request_id"]
    return request_id


async def test_request_answer_and_answers_round_trip() -> None:
    async with node(ASKER, PROVIDER) as asker, node(PROVIDER, ASKER) as provider:
        excluded = str(uuid.UUID(int=3))
        request_id = await broadcast(asker, exclude_networks=[excluded])
        deliver(asker.take(), provider, ASKER)
        polled = await (await provider.http.get("/v1/broadcast/requests?kind=storage")).json()
        (item,) = polled["requests"]
        assert item["requester"] == ASKER.public_key.hex() and item["request_id"] == request_id
        assert base64.b64decode(item["terms"]) == TERMS
        assert item["exclude_networks"] == [excluded] and polled["next"] == item["seq"] == 1
        offer = OfferTerms(b"o" * 16, 2**26, 1, b"L" * 16, b"N" * 16, 7950, 2**30, 2**29, 60, 1)
        answer = {
            "handle": item["handle"],
            "amount": 2**26,
            "addresses": ["fd00::b"],
            "terms": base64.b64encode(offer.pack()).decode(),
        }
        assert (await provider.http.post("/v1/broadcast/answer", json=answer)).status == 202
        deliver(provider.take(), asker, PROVIDER)
        got = await (await asker.http.get(f"/v1/broadcast/{request_id}/answers")).json()
        (opened,) = got["answers"]
        assert opened["answerer"] == PROVIDER.public_key.hex()
        parsed = Offer.from_answer(
            bytes.fromhex(opened["answerer"]),
            opened["addresses"],
            base64.b64decode(opened["terms"]),
        )
        assert parsed is not None and parsed.terms == offer


async def test_the_long_poll_waits_for_a_request_and_filters_by_kind() -> None:
    async with node(ASKER, PROVIDER) as asker, node(PROVIDER, ASKER) as provider:
        poll = asyncio.create_task(provider.http.get("/v1/broadcast/requests?after=0&wait=5"))
        await asyncio.sleep(0.05)
        assert not poll.done()
        await broadcast(asker)
        deliver(asker.take(), provider, ASKER)
        assert len((await (await poll).json())["requests"]) == 1
        empty = await provider.http.get("/v1/broadcast/requests?kind=cpu&after=0")
        assert (await empty.json())["requests"] == []
        later = await provider.http.get("/v1/broadcast/requests?after=1&wait=0.05")
        assert (await later.json())["requests"] == []


@pytest.mark.parametrize(
    "query",
    ["after=x", "after=-1", "wait=31", "wait=nan", "kind=gpu", "after=99999999999999999999"],
)
async def test_bad_poll_arguments_are_refused(query: str) -> None:
    async with node(PROVIDER, ASKER) as provider:
        resp = await provider.http.get(f"/v1/broadcast/requests?{query}")
        assert resp.status == 400


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1]", 400),
        (json.dumps({"handle": "00" * 32, "amount": 1}).encode(), 404),  # forged handle
        (json.dumps({"handle": "zz", "amount": 1}).encode(), 400),
        (json.dumps({"handle": "00" * 32, "amount": 0}).encode(), 400),
        (json.dumps({"handle": "00" * 32, "amount": 1, "addresses": ["1.2.3.4"]}).encode(), 400),
        (json.dumps({"handle": "00" * 32, "amount": 1, "addresses": ["::1"] * 5}).encode(), 400),
        (json.dumps({"handle": "00" * 32, "amount": 1, "terms": "!!"}).encode(), 400),
        (json.dumps({"handle": "00" * 32, "amount": 1, "terms": "A" * 1100}).encode(), 400),
        (json.dumps({"handle": "00" * 32, "amount": 1, "expires_ms": -1}).encode(), 400),
        (json.dumps({"handle": "00" * 32, "amount": 1, "extra": 1}).encode(), 400),
        (b"{" + b" " * 5000 + b"}", 413),
    ],
)
async def test_bad_answers_are_refused(body: bytes, status: int) -> None:
    async with node(PROVIDER, ASKER) as provider:
        resp = await provider.http.post("/v1/broadcast/answer", data=body)
        assert resp.status == status
        assert provider.take() == []


async def test_a_request_answered_after_it_aged_out_is_not_found() -> None:
    async with node(ASKER, PROVIDER) as asker, node(PROVIDER, ASKER) as provider:
        await broadcast(asker)
        deliver(asker.take(), provider, ASKER)
        item = provider.exchange.inbox.after(0, None, NOW)[0][0]
        assert provider.exchange.inbox.find(item.request.digest, NOW + 61) is None


async def test_answers_of_someone_elses_or_unknown_request_are_not_found() -> None:
    async with node(ASKER, PROVIDER) as asker:
        assert (await asker.http.get(f"/v1/broadcast/{'00' * 16}/answers")).status == 404
        assert (await asker.http.get("/v1/broadcast/nothex/answers")).status == 400


@pytest.mark.parametrize(
    "extra",
    [
        {"terms": "not base64!"},
        {"terms": base64.b64encode(b"x" * 513).decode()},
        {"exclude_locations": ["not a uuid"]},
        {"exclude_locations": [str(uuid.UUID(int=1))] * 65},
        {"exclude_networks": "x"},
    ],
)
async def test_bad_broadcast_terms_are_refused(extra: dict[str, object]) -> None:
    async with node(ASKER, PROVIDER) as asker:
        body = {"kind": "storage", "amount": 1, **extra}
        resp = await asker.http.post("/v1/broadcast", json=body)
        assert resp.status == 400
        assert asker.core.status()["broadcasts"] == 0


def test_the_inbox_is_bounded_and_counts_what_a_slow_poller_missed() -> None:
    inbox = Inbox(capacity=3, own_capacity=1, per_request=1)
    for n in range(5):
        req = make_request(ASKER, RequestBody(bytes([n]) * 16, "storage", 1, 2), NOW)
        inbox.delivered(req, 2, NOW)
    found, missed = inbox.after(0, None, NOW)
    assert [n.seq for n in found] == [3, 4, 5] and missed == 2
    inbox.own_request(b"a" * 16)
    inbox.own_request(b"b" * 16)
    assert inbox.answers(b"a" * 16) is None and inbox.answers(b"b" * 16) == []


# -- published status sections ----------------------------------------------------------------


@asynccontextmanager
async def sections(clock: list[float]) -> AsyncIterator[tuple[StatusBoard, TestClient[Any, Any]]]:
    board = StatusBoard("id", "0", 1, "now")
    board.add_section("broadcast", dict)
    published = PublishedSections(board, clock=lambda: clock[0])
    app = web.Application()
    app.add_routes(published.routes())
    async with TestClient(TestServer(app)) as http:
        yield board, http


async def test_a_published_section_shows_in_the_status_and_goes_stale() -> None:
    clock = [100.0]
    async with sections(clock) as (board, http):
        resp = await http.put("/v1/status/sections/volumes", json={"used": 5})
        assert resp.status == 200
        assert board.snapshot(1.0)["volumes"] == {"used": 5, "published_age_s": 0.0}
        await http.put("/v1/status/sections/volumes", json={"used": 6})
        clock[0] += STALE_AFTER_S + 1
        shown = board.snapshot(1.0)["volumes"]
        assert shown["used"] == 6 and shown["stale"] is True


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("broadcast", b"{}", 409),  # the daemon's own section
        ("state", b"{}", 409),  # a base field
        ("Bad-Name", b"{}", 409),
        ("x" * 40, b"{}", 409),
        ("pool", b"[1]", 400),
        ("pool", b"{bad", 400),
        ("pool", b"[" * 10000, 400),
        ("pool", json.dumps({"a": [[[[[[[[[1]]]]]]]]]}).encode(), 400),
        ("pool", b'{"a": "' + b"x" * MAX_SECTION_BYTES + b'"}', 413),
    ],
)
async def test_bad_sections_are_refused(name: str, body: bytes, status: int) -> None:
    async with sections([0.0]) as (board, http):
        resp = await http.put(f"/v1/status/sections/{name}", data=body)
        assert resp.status == status
        snapshot = board.snapshot(1.0)
        assert "pool" not in snapshot and snapshot["broadcast"] == {}


async def test_the_number_of_sections_is_bounded() -> None:
    async with sections([0.0]) as (_, http):
        codes = [(await http.put(f"/v1/status/sections/s{n}", json={})).status for n in range(17)]
        assert codes == [200] * 16 + [409]


def test_rms_status_shows_a_providers_volumes() -> None:
    p = pair()
    p.lease()
    board = StatusBoard("id", "0", 1, "now")
    published = PublishedSections(board, clock=lambda: 0.0)
    published.publish("volumes", json.loads(json.dumps(p.provider.status(LEASE_NOW + 10))))
    text = render_table(board.snapshot(1.0))
    (line,) = [x for x in text.splitlines() if "lease ends in 50.0 s" in x]
    assert CLIENT.node_id.hex()[:16] in line and "0.06 GiB" in line and "not exported" in line
    assert "0.06 GiB of 0.25 GiB leased" in text
    assert render_volumes(["not", "a", "map"])  # shown plainly, never raising
