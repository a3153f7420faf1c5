"""POST /v1/broadcast: well-formed requests are broadcast, every bad body is a 400."""

from __future__ import annotations

import json
import random

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rms.gossip.adapter import GossipService
from rms.gossip.control import routes
from rms.gossip.core import Gossip
from rms.identity import NodeIdentity

NOW = 1_800_000_000.0


def service() -> GossipService:
    core = Gossip(NodeIdentity.from_seed(b"\x05" * 32), random.Random(5), now=NOW)
    return GossipService(core, lambda event: None, clock=lambda: NOW)


async def post(body: bytes) -> tuple[int, str, GossipService]:
    svc = service()
    app = web.Application()
    app.add_routes(routes(svc))
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/v1/broadcast", data=body)
        return resp.status, await resp.text(), svc


async def test_a_request_is_broadcast_and_its_id_returned() -> None:
    status, text, svc = await post(json.dumps({"kind": "cpu", "amount": 500}).encode())
    assert status == 202
    assert len(bytes.fromhex(json.loads(text)["request_id"])) == 16
    assert svc.core.status()["broadcasts"] == 1


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected"),
        (json.dumps({"kind": "gpu", "amount": 1}).encode(), "kind"),
        (json.dumps({"kind": "cpu", "amount": 0}).encode(), "amount"),
        (json.dumps({"kind": "cpu", "amount": 2**64}).encode(), "amount"),
        (json.dumps({"kind": "cpu", "amount": "5"}).encode(), "amount"),
        (json.dumps({"kind": "cpu", "amount": 1, "hop_limit": 0}).encode(), "hop_limit"),
        (json.dumps({"kind": "cpu", "amount": 1, "extra": 1}).encode(), "expected"),
    ],
)
async def test_bad_bodies_are_refused(body: bytes, needle: str) -> None:
    status, text, svc = await post(body)
    assert status == 400
    assert needle in text
    assert svc.core.status()["broadcasts"] == 0


async def test_an_oversized_body_is_refused() -> None:
    status, _, svc = await post(b"{" + b" " * 8000 + b"}")
    assert status == 413
    assert svc.core.status()["broadcasts"] == 0
