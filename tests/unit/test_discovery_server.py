"""The mirror's HTTP API through aiohttp's test client (in-process, no TLS)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgpack
import pytest
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from rms.discovery import ParsedFeed, VpnRecord, parse_feed
from tests.discovery_support import MEMBERS, NOW, altered, charter, record
from vpn_discovery.config import FeedSection
from vpn_discovery.mirror import Mirror, decode_bundle, decode_digest
from vpn_discovery.server import ServerContext, create_app
from vpn_discovery.store import RecordStore, StoreLimits


@dataclass
class Api:
    client: TestClient  # type: ignore[type-arg]
    mirror: Mirror
    changed: list[VpnRecord] = field(default_factory=list)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    mirror = Mirror(RecordStore(StoreLimits(per_founder=50)))
    changed: list[VpnRecord] = []
    context = ServerContext(
        mirror=mirror,
        feed=FeedSection(default_items=3, max_items=5),
        public_url="https://discovery.test/feed.rss",
        rng=random.Random(0),
        clock=lambda: NOW,
        on_change=changed.append,
    )
    async with TestClient(TestServer(create_app(context))) as client:
        yield Api(client, mirror, changed)


async def post(api: Api, data: bytes) -> tuple[int, str]:
    resp = await api.client.post("/records", data=data)
    return resp.status, await resp.text()


async def test_publishing_stores_once_and_tells_replication(api: Api) -> None:
    rec = record()
    assert await post(api, rec.raw) == (200, "added\n")
    assert await post(api, rec.raw) == (200, "unchanged\n")
    assert api.changed == [rec]
    assert await post(api, record(seq=2).raw) == (200, "updated\n")
    assert len(api.changed) == 2


async def test_invalid_stale_and_oversized_records_are_refused(api: Api) -> None:
    await post(api, record(seq=5).raw)
    with capture_logs() as logs:
        status, text = await post(api, altered(record(seq=6), MEMBERS, 0))
    assert (status, text.split(":")[0]) == (400, "bad_signature")
    assert logs[0]["event"] == "record.rejected" and logs[0]["log_level"] == "debug"
    assert await post(api, record(seq=4).raw) == (409, "stale\n")
    assert await post(api, record(seq=5, members=1).raw) == (409, "conflict\n")
    status, _ = await post(api, b"x" * 5000)
    assert status == 413
    assert len(api.changed) == 1


async def test_the_feed_is_a_random_pick_of_soliciting_records(api: Api) -> None:
    wanted = [record(vpn=charter(salt=i.to_bytes(16, "big"))) for i in range(8)]
    for rec in [*wanted, record(soliciting=False)]:
        await post(api, rec.raw)
    resp = await api.client.get("/feed.rss")
    assert resp.status == 200
    assert resp.content_type == "application/rss+xml"
    assert resp.headers["Cache-Control"] == "no-store"
    feed = parse_feed(await resp.read(), NOW)
    assert isinstance(feed, ParsedFeed)
    assert len(feed.records) == 3  # default_items
    assert set(feed.records) <= {r.vpn_id for r in wanted}
    resp = await api.client.get("/feed.rss", params={"n": "100"})
    feed = parse_feed(await resp.read(), NOW)
    assert isinstance(feed, ParsedFeed) and len(feed.records) == 5  # max_items


@pytest.mark.parametrize("n", ["0", "-1", "x", "1e3", "9999999", "\u00b2", "\u0661"])
async def test_a_bad_item_count_is_a_400(api: Api, n: str) -> None:
    resp = await api.client.get("/feed.rss", params={"n": n})
    assert resp.status == 400


async def test_health_records_and_digest(api: Api) -> None:
    rec = record()
    await post(api, rec.raw)
    await post(api, b"junk")
    resp = await api.client.get("/health")
    health = await resp.json()
    assert health["ok"] is True and health["records"] == 1 and health["soliciting"] == 1
    assert health["counts"] == {"added": 1, "rejected.malformed": 1}
    bundle = await (await api.client.get("/records.msgpack")).read()
    assert decode_bundle(bundle, 10) == [rec.raw]
    digest = await (await api.client.get("/digest.msgpack")).read()
    assert decode_digest(digest, 10) == {rec.vpn_id: (1, 1)}
    assert msgpack.unpackb(digest) == [[rec.vpn_id.bytes, 1, 1]]


async def test_unknown_routes_and_methods(api: Api) -> None:
    assert (await api.client.get("/records")).status == 405
    assert (await api.client.get("/nope")).status == 404
