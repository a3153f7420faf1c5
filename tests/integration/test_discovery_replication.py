"""Replication between in-process mirrors over real HTTPS: pushes, anti-entropy, no trust."""

from __future__ import annotations

import asyncio
import random
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import msgpack
from aiohttp import web

from rms.discovery.client import open_session, ssl_context
from rms.lab.ca import ServerFiles
from tests.discovery_support import MEMBERS, altered, charter, https_app, lab_tls, record
from vpn_discovery.config import FeedSection
from vpn_discovery.mirror import Mirror
from vpn_discovery.replication import Replicator
from vpn_discovery.server import ServerContext, create_app
from vpn_discovery.store import RecordStore


@dataclass
class Node:
    mirror: Mirror
    url: str


async def serve_mirror(stack: AsyncExitStack, tls: ServerFiles) -> Node:
    mirror = Mirror(RecordStore())
    context = ServerContext(
        mirror, FeedSection(), "https://d.test/feed.rss", random.Random(0), time.time, _ignore
    )
    url = await stack.enter_async_context(https_app(create_app(context), tls))
    return Node(mirror, url)


def _ignore(_: object) -> None:
    """Pushes are driven by hand in these tests."""


async def replicator(
    stack: AsyncExitStack, tls: ServerFiles, node: Node, peers: list[str]
) -> Replicator:
    session = await stack.enter_async_context(open_session(ssl_context(tls.ca), 2.0))
    return Replicator(
        node.mirror,
        peers,
        session,
        interval_s=600,
        max_sync_bytes=1 << 20,
        rng=random.Random(0),
        clock=time.time,
    )


async def test_one_round_pulls_what_is_missing_and_pushes_what_the_peer_lacks(
    tmp_path: Path,
) -> None:
    tls = lab_tls(tmp_path)
    now = time.time()
    mine_only, theirs_only = record(now=now), record(vpn=charter(salt=bytes([5]) * 16), now=now)
    newer_there = record(vpn=charter(salt=bytes([6]) * 16), seq=2, now=now)
    older_here = record(vpn=charter(salt=bytes([6]) * 16), seq=1, now=now)
    async with AsyncExitStack() as stack:
        a, b = await serve_mirror(stack, tls), await serve_mirror(stack, tls)
        for rec in (mine_only, older_here):
            a.mirror.receive(rec.raw, now)
        for rec in (theirs_only, newer_there):
            b.mirror.receive(rec.raw, now)
        rep = await replicator(stack, tls, a, [b.url])
        await rep.round()
        assert a.mirror.store.digest() == b.mirror.store.digest()
        assert a.mirror.store.get(newer_there.vpn_id) == newer_there
        assert a.mirror.counts["sync.pulled"] == 2 and a.mirror.counts["sync.pushed"] == 1


async def test_a_peer_cannot_slip_in_a_forgery(tmp_path: Path) -> None:
    tls = lab_tls(tmp_path)
    now = time.time()
    genuine = record(now=now)
    forged = altered(record(seq=9, now=now), MEMBERS, 0)
    bundle = msgpack.packb([forged, genuine.raw])
    digest = msgpack.packb([[genuine.vpn_id.bytes, 1, 9]])

    async def records(_: web.Request) -> web.Response:
        return web.Response(body=bundle)

    async def summary(_: web.Request) -> web.Response:
        return web.Response(body=digest)

    rogue = web.Application()
    rogue.router.add_get("/records.msgpack", records)
    rogue.router.add_get("/digest.msgpack", summary)
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(https_app(rogue, tls))
        node = Node(Mirror(RecordStore()), "")
        rep = await replicator(stack, tls, node, [url])
        await rep.round()
    assert list(node.mirror.store) == [genuine]
    assert node.mirror.counts["rejected.bad_signature"] == 1


async def test_queued_pushes_reach_live_peers_and_dead_ones_are_counted(tmp_path: Path) -> None:
    tls = lab_tls(tmp_path)
    rec = record(now=time.time())
    async with AsyncExitStack() as stack:
        a, b = await serve_mirror(stack, tls), await serve_mirror(stack, tls)
        rep = await replicator(stack, tls, a, [b.url, "https://127.0.0.1:9"])
        rep.announce(rec)
        loops = [asyncio.create_task(rep.push_loop(peer)) for peer in rep.peers]
        try:
            for _ in range(250):
                if rep.counts["push.sent"] + rep.counts["push.failed"] == 2:
                    break
                await asyncio.sleep(0.02)  # waiting for the sockets, not for a timer
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        assert list(b.mirror.store) == [rec]
        assert rep.counts["push.sent"] == 1 and rep.counts["push.failed"] == 1
