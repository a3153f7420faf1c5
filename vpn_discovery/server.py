"""The mirror's HTTPS API: the feed, publishing, and what peers sync from (aiohttp adapter).

| route                 | answer                                                         |
|-----------------------|----------------------------------------------------------------|
| GET /feed.rss?n=K     | RSS 2.0, a random pick of K soliciting records (default 16)   |
| GET /health           | JSON: ok, record counts, counters                              |
| POST /records         | body: one signed record; 200 stored, 400 invalid, 409 stale,   |
|                       | 413 too large, 507 over the caps                               |
| GET /records.msgpack  | every current record, a msgpack bundle (anti-entropy)          |
| GET /digest.msgpack   | [vpn_id, delegation version, seq] per record (anti-entropy)    |
| GET /library/metadata/F, /library/targets/F | the component library's files, as they are |

Every decision is the core's (vpn_discovery.mirror); handlers translate HTTP to and from it.

The feed document is RSS 2.0 made with feedgen, one <item> per record. Each item's
<description> is the standard base64 of the record's signed bytes: the only part a client
trusts. Title, guid, categories and pubDate repeat some fields for people reading the feed;
a client ignores them (rms.discovery.feed).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import random
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from feedgen.feed import FeedGenerator

from rms.discovery import MAX_RECORD_BYTES, Rejected, VpnRecord
from vpn_discovery.config import FeedSection
from vpn_discovery.mirror import Mirror, Received, encode_digest
from vpn_discovery.store import Outcome

RSS_TYPE = "application/rss+xml"
MSGPACK_TYPE = "application/vnd.msgpack"
NO_STORE = {"Cache-Control": "no-store"}  # every feed request gets a fresh random pick
TITLE = "True Cloud management VPNs"
DESCRIPTION = (
    "Management VPNs of the True Cloud that are looking for members. Each item carries one "
    "VPN record signed by the VPN's guardian, in base64; verify it before using it."
)
MEMBERS_DOMAIN = "truecloud:members"
ENDPOINT_DOMAIN = "truecloud:guest-endpoint"
TTL_MINUTES = 2  # how long a reader may cache a feed (records are republished every 2 min)
STATUS = {
    Outcome.ADDED: 200,
    Outcome.UPDATED: 200,
    Outcome.UNCHANGED: 200,
    Outcome.STALE: 409,
    Outcome.CONFLICT: 409,
    Outcome.FULL: 507,
    Outcome.QUOTA: 507,
}


@dataclass(frozen=True)
class ServerContext:
    """What the handlers need: the core, feed settings, randomness, clock, and a hook."""

    mirror: Mirror
    feed: FeedSection
    public_url: str
    rng: random.Random
    clock: Callable[[], float]
    on_change: Callable[[VpnRecord], None]  # tells the replicator about a stored record
    library: Path | None = None  # a TUF repository (docs/updates.md); nodes verify every byte


CONTEXT = web.AppKey("context", ServerContext)
log = structlog.get_logger("vpn_discovery")


def create_app(context: ServerContext) -> web.Application:
    """The mirror's aiohttp application."""
    # client_max_size caps every request body: the largest is one record.
    app = web.Application(client_max_size=MAX_RECORD_BYTES)
    app[CONTEXT] = context
    app.router.add_get("/feed.rss", feed)
    app.router.add_get("/health", health)
    app.router.add_post("/records", publish)
    app.router.add_get("/records.msgpack", records)
    app.router.add_get("/digest.msgpack", digest)
    if context.library is not None:  # only what nodes read; never the staged/ directory
        for part in ("metadata", "targets"):
            app.router.add_static(f"/library/{part}", context.library / part, follow_symlinks=False)
    return app


def server_ssl_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The server's TLS context: TLS 1.2 or newer, the configured certificate chain."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


async def feed(request: web.Request) -> web.Response:
    """GET /feed.rss?n=K."""
    ctx = request.app[CONTEXT]
    n = _items(request.query.get("n"), ctx.feed)
    now = ctx.clock()
    document = render_feed(ctx.mirror.feed(n, ctx.rng, now), link=ctx.public_url, now=now)
    return web.Response(body=document, content_type=RSS_TYPE, charset="utf-8", headers=NO_STORE)


def _items(text: str | None, settings: FeedSection) -> int:
    if text is None:
        return settings.default_items
    # isascii: str.isdigit() also accepts digits int() cannot read, such as "²".
    if not (text.isascii() and text.isdigit()) or len(text) > 6 or int(text) < 1:
        raise web.HTTPBadRequest(text=f"n must be a whole number from 1 to {settings.max_items}")
    return min(int(text), settings.max_items)


async def health(request: web.Request) -> web.Response:
    """GET /health: the mirror answers, and what it holds."""
    ctx = request.app[CONTEXT]
    store = ctx.mirror.store
    body: dict[str, Any] = {
        "ok": True,
        "records": len(store),
        "soliciting": len(store.soliciting()),
        "counts": dict(sorted(ctx.mirror.counts.items())),
    }
    return web.json_response(body, headers=NO_STORE)


async def publish(request: web.Request) -> web.Response:
    """POST /records: verify, store, and hand a new record to replication."""
    ctx = request.app[CONTEXT]
    data = await request.read()  # over client_max_size: aiohttp answers 413 itself
    received = ctx.mirror.receive(data, ctx.clock())
    _log(received, request.remote)
    if isinstance(received.outcome, Rejected):
        reason = received.outcome
        return web.Response(status=400, text=f"{reason.reason.value}: {reason.detail}\n")
    if received.changed and received.record is not None:
        ctx.on_change(received.record)
    return web.Response(status=STATUS[received.outcome], text=f"{received.outcome.value}\n")


def _log(received: Received, peer: str | None) -> None:
    outcome, record = received.outcome, received.record
    if isinstance(outcome, Rejected):
        log.debug("record.rejected", reason=outcome.reason.value, detail=outcome.detail, peer=peer)
    elif record is not None and received.changed:
        log.info("record.stored", vpn=str(record.vpn_id), seq=record.seq, outcome=outcome.value)


async def records(request: web.Request) -> web.Response:
    """GET /records.msgpack: every current record."""
    ctx = request.app[CONTEXT]
    body = ctx.mirror.bundle(ctx.clock())
    return web.Response(body=body, content_type=MSGPACK_TYPE, headers=NO_STORE)


async def digest(request: web.Request) -> web.Response:
    """GET /digest.msgpack: the rank of every record held."""
    ctx = request.app[CONTEXT]
    ctx.mirror.expire(ctx.clock())
    body = encode_digest(ctx.mirror.store.digest())
    return web.Response(body=body, content_type=MSGPACK_TYPE, headers=NO_STORE)


# --- the feed document -----------------------------------------------------------------


def render_feed(records: Sequence[VpnRecord], *, link: str, now: float) -> bytes:
    """The RSS 2.0 document for these records, built at wall-clock `now` (s)."""
    fg = FeedGenerator()
    fg.title(TITLE)
    fg.link(href=link, rel="self")
    fg.description(DESCRIPTION)
    fg.lastBuildDate(_datetime(int(now * 1000)))
    fg.ttl(TTL_MINUTES)
    for record in records:
        _add_item(fg, record)
    document: bytes = fg.rss_str(pretty=False)
    return document


def _add_item(fg: FeedGenerator, record: VpnRecord) -> None:
    entry = fg.add_entry(order="append")
    entry.title(f"VPN {record.vpn_id}")
    entry.guid(guid_of(record), permalink=False)
    entry.description(base64.b64encode(record.raw).decode("ascii"))
    entry.category(term="soliciting" if record.soliciting else "full")
    entry.category(term=f"{record.members}/{record.capacity}", scheme=MEMBERS_DOMAIN)
    for ip in record.public_ips:
        entry.category(term=endpoint(ip, record.guest_port), scheme=ENDPOINT_DOMAIN)
    entry.pubDate(_datetime(record.issued_at))


def guid_of(record: VpnRecord) -> str:
    """An item's guid: the VPN id and the record's seq."""
    return f"{record.vpn_id}:{record.seq}"


def endpoint(ip: str, port: int) -> str:
    """`ip:port`, with brackets around an IPv6 address."""
    return f"[{ip}]:{port}" if ipaddress.ip_address(ip).version == 6 else f"{ip}:{port}"


def _datetime(ms: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
