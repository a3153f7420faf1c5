"""The discovery client against real HTTPS servers on loopback: trust, caps, failures."""

from __future__ import annotations

import asyncio
import base64
import random
import time
from pathlib import Path

import pytest
from aiohttp import web

from rms.discovery import RecordReason
from rms.discovery.client import (
    DiscoveryClient,
    DiscoveryError,
    DiscoveryUnavailable,
    mirror_base,
)
from tests.discovery_support import https_app, lab_tls, record
from vpn_discovery.server import render_feed

POSTED = web.AppKey("posted", list[bytes])


def feed_app(body: bytes, *, delay: float = 0.0, status: int = 200) -> web.Application:
    posted: list[bytes] = []

    async def feed(_: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.Response(body=body, status=status, content_type="application/rss+xml")

    async def publish(request: web.Request) -> web.Response:
        posted.append(await request.read())
        return web.Response(text="added\n")

    app = web.Application()
    app.router.add_get("/feed.rss", feed)
    app.router.add_post("/records", publish)
    app[POSTED] = posted
    return app


def client(urls: list[str], ca: Path, **kwargs: float) -> DiscoveryClient:
    return DiscoveryClient(urls, ca_file=ca, rng=random.Random(0), **kwargs)  # type: ignore[arg-type]


def dead_url() -> str:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    return "https://127.0.0.1:9/"


async def test_fetch_verifies_records_from_a_trusted_mirror(tmp_path: Path) -> None:
    tls = lab_tls(tmp_path)
    rec = record(now=time.time())
    body = render_feed([rec], link="https://discovery.test/feed.rss", now=time.time())
    async with https_app(feed_app(body), tls) as url:
        result = await client([dead_url(), url + "feed.rss"], tls.ca).fetch(n=4)
    assert result.records == {rec.vpn_id: rec}
    assert result.mirrors_read == (url + "feed.rss",)
    assert [f.url for f in result.failures] == [dead_url()]
    assert "cannot connect" in result.failures[0].reason


async def test_an_untrusted_certificate_is_a_failed_mirror(tmp_path: Path) -> None:
    tls, other = lab_tls(tmp_path / "a"), lab_tls(tmp_path / "b")
    async with https_app(feed_app(b"<rss><channel/></rss>"), tls) as url:
        with pytest.raises(DiscoveryUnavailable, match="TLS certificate not trusted"):
            await client([url], other.ca).fetch()


async def test_oversized_redirected_failing_and_slow_mirrors_fail_cleanly(tmp_path: Path) -> None:
    tls = lab_tls(tmp_path)

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://127.0.0.1:9/feed.rss")

    moved = web.Application()
    moved.router.add_get("/feed.rss", redirect)
    async with (
        https_app(feed_app(b"<rss>" + b" " * 200_000), tls) as big,
        https_app(moved, tls) as redirected,
        https_app(feed_app(b"", status=503), tls) as failing,
        https_app(feed_app(b"<rss><channel/></rss>", delay=2), tls) as slow,
        https_app(feed_app(b"<!DOCTYPE rss><rss/>"), tls) as hostile,
    ):
        urls = [big, redirected, failing, slow, hostile]
        started = time.monotonic()
        with pytest.raises(DiscoveryUnavailable) as exc:
            await client(urls, tls.ca, timeout_s=0.5, max_feed_bytes=100_000).fetch()
        assert time.monotonic() - started < 4
    message = str(exc.value)
    for expected in ("cap", "HTTP 302", "HTTP 503", "timed out", "forbidden_xml"):
        assert expected in message
    assert "try again" in message


async def test_a_rogue_feed_is_outvoted_by_a_second_mirror(tmp_path: Path) -> None:
    tls = lab_tls(tmp_path)
    now = time.time()
    old, new = record(seq=1, now=now), record(seq=2, now=now)
    bad = bytearray(new.raw)
    bad[-1] ^= 1
    rogue_items = [old, new]  # rendered, then the newer record's bytes are altered
    rogue_body = render_feed(rogue_items, link="https://x.test/feed.rss", now=now).replace(
        base64.b64encode(new.raw), base64.b64encode(bytes(bad))
    )
    genuine_body = render_feed([new], link="https://x.test/feed.rss", now=now)
    async with (
        https_app(feed_app(rogue_body), tls) as rogue,
        https_app(feed_app(genuine_body), tls) as genuine,
    ):
        result = await client([rogue, genuine], tls.ca, fanout=2).fetch()
    assert result.records[new.vpn_id] == new
    assert [(r.mirror, r.reason) for r in result.rejected] == [(rogue, RecordReason.BAD_SIGNATURE)]


async def test_publish_succeeds_when_one_mirror_takes_the_record(tmp_path: Path) -> None:
    tls = lab_tls(tmp_path)
    rec = record(now=time.time())
    app = feed_app(b"")
    async with https_app(app, tls) as url:
        result = await client([url, dead_url()], tls.ca).publish(rec)
    assert result.accepted == (url,)
    assert app[POSTED] == [rec.raw]
    with pytest.raises(DiscoveryUnavailable, match="no discovery mirror took the record"):
        await client([dead_url()], tls.ca).publish(rec.raw)


def test_configuration_errors_are_local(tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError, match="no discovery mirror"):
        DiscoveryClient([])
    with pytest.raises(DiscoveryError, match="not an https"):
        DiscoveryClient(["http://x/feed.rss"])
    with pytest.raises(DiscoveryError, match="CA file"):
        DiscoveryClient(["https://x/"], ca_file=tmp_path / "absent.pem")
    assert mirror_base("https://d.test/feed.rss") == "https://d.test/"
    assert mirror_base("https://d.test:8443") == "https://d.test:8443/"
    assert mirror_base("https://d.test/m/feed.rss?x=1") == "https://d.test/m/"
