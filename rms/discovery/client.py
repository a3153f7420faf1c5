"""The discovery client: fetch the feed from the mirrors, verify every record, publish records.

The thin asyncio adapter around rms.discovery.feed: it tries the mirrors in random order
with bounded timeouts and a response cap, reads `fanout` feeds, and merges their verified
records by the selection rule, so one mirror that withholds or rolls back records is
outvoted by the next. HTTPS is verified against the configured CA file or the system store;
redirects are refused (they could lead off HTTPS) and responses are never decompressed (a
small gzip bomb must not become a large feed). Errors are translated here, once, into
`MirrorError` per mirror; a call fails with `DiscoveryUnavailable` only when no mirror served.

The helpers (`open_session`, `get_capped`, `post_record`, `mirror_base`) are shared with the
mirrors' replication (vpn_discovery.replication).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from rms import __version__
from rms.discovery.feed import MAX_FEED_BYTES, FeedRejected, ItemReason, parse_feed
from rms.discovery.fields import RecordReason
from rms.discovery.record import MAX_RECORD_BYTES, VpnRecord, latest

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_FANOUT = 2  # feeds read per fetch: one lying mirror cannot hide a newer record
MAX_ERROR_TEXT = 200
FEED_PATH = "feed.rss"
RECORDS_PATH = "records"


class DiscoveryError(Exception):
    """A local error: the client's own configuration cannot work."""


class DiscoveryUnavailable(DiscoveryError):
    """No mirror served the request; the message lists what each mirror did."""


class MirrorError(Exception):
    """One mirror failed one request: unreachable, TLS, HTTP status, too large, refused."""


@dataclass(frozen=True, slots=True)
class MirrorFailure:
    """A mirror that did not serve, and why."""

    url: str
    reason: str


@dataclass(frozen=True, slots=True)
class MirrorRejection:
    """An item a mirror served that was dropped, and why."""

    mirror: str
    index: int
    reason: ItemReason | RecordReason
    detail: str


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Verified records (the winner per VPN) from the feeds read, and what was dropped."""

    records: dict[uuid.UUID, VpnRecord]
    rejected: tuple[MirrorRejection, ...]
    mirrors_read: tuple[str, ...]
    failures: tuple[MirrorFailure, ...]


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The mirrors that took the record, and those that did not."""

    accepted: tuple[str, ...]
    failures: tuple[MirrorFailure, ...]


def mirror_base(url: str) -> str:
    """A mirror's base URL (ending in /) from its base or its feed URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise DiscoveryError(f"{url!r} is not an https:// URL")
    path = parts.path.removesuffix(FEED_PATH)
    return urllib.parse.urlunsplit(("https", parts.netloc, path.rstrip("/") + "/", "", ""))


def ssl_context(ca_file: Path | str | None) -> ssl.SSLContext:
    """A client TLS context trusting `ca_file` (PEM), or the system store when it is empty."""
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise DiscoveryError(f"cannot load the CA file {ca_file}: {exc}") from None


def open_session(context: ssl.SSLContext, timeout_s: float) -> aiohttp.ClientSession:
    """An HTTPS session with per-request timeouts, no decompression and no proxies."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        auto_decompress=False,
        headers={"Accept-Encoding": "identity", "User-Agent": f"truecloud/{__version__}"},
    )


async def get_capped(
    session: aiohttp.ClientSession, url: str, cap: int, params: Mapping[str, str] | None = None
) -> bytes:
    """GET `url` and return its body of at most `cap` bytes; raises MirrorError."""
    try:
        async with session.get(url, params=params, allow_redirects=False) as resp:
            if resp.status != 200:
                raise MirrorError(f"HTTP {resp.status}")
            return await _read_capped(resp, cap)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        raise MirrorError(describe(exc)) from None


async def post_record(session: aiohttp.ClientSession, base: str, raw: bytes) -> None:
    """POST signed record bytes to a mirror; raises MirrorError with the mirror's reason."""
    headers = {"Content-Type": "application/octet-stream"}
    url = base + RECORDS_PATH
    try:
        async with session.post(url, data=raw, headers=headers, allow_redirects=False) as resp:
            if resp.status != 200:
                text = (await _read_capped(resp, MAX_ERROR_TEXT)).decode("utf-8", "replace")
                raise MirrorError(f"HTTP {resp.status}: {text.strip()}")
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        raise MirrorError(describe(exc)) from None


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    if resp.content_length is not None and resp.content_length > cap:
        raise MirrorError(f"answer of {resp.content_length} bytes, the cap is {cap}")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > cap:
            raise MirrorError(f"answer larger than the cap of {cap} bytes")
    return bytes(body)


def describe(exc: BaseException) -> str:
    """One line on what went wrong with a request, for logs and error messages."""
    if isinstance(exc, MirrorError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate not trusted"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    return f"{type(exc).__name__}: {str(exc)[:80]}"


class DiscoveryClient:
    """Reads the feed from a set of mirrors and publishes records to them."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        ca_file: Path | str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        fanout: int = DEFAULT_FANOUT,
        max_feed_bytes: int = MAX_FEED_BYTES,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not urls:
            raise DiscoveryError("no discovery mirror configured (discovery.urls is empty)")
        self.urls = tuple(urls)
        self._bases = {url: mirror_base(url) for url in self.urls}
        self._context = ssl_context(ca_file)
        self._timeout_s = timeout_s
        self._fanout = max(1, fanout)
        self._max_feed_bytes = max_feed_bytes
        self._rng = rng or random.Random()  # noqa: S311 - mirror order, not a secret
        self._clock = clock

    async def fetch(self, n: int | None = None) -> FetchResult:
        """Read feeds (asking each for `n` items) until `fanout` served; merge and verify."""
        order = list(self.urls)
        self._rng.shuffle(order)
        read: list[str] = []
        records: list[VpnRecord] = []
        rejected: list[MirrorRejection] = []
        failures: list[MirrorFailure] = []
        async with open_session(self._context, self._timeout_s) as session:
            for url in order:
                if len(read) >= self._fanout:
                    break
                try:
                    feed_records, feed_rejected = await self._read_feed(session, url, n)
                except MirrorError as exc:
                    failures.append(MirrorFailure(url, str(exc)))
                    continue
                read.append(url)
                records += feed_records
                rejected += feed_rejected
        if not read:
            raise DiscoveryUnavailable(_summary("no discovery mirror served the feed", failures))
        return FetchResult(latest(records), tuple(rejected), tuple(read), tuple(failures))

    async def _read_feed(
        self, session: aiohttp.ClientSession, url: str, n: int | None
    ) -> tuple[list[VpnRecord], list[MirrorRejection]]:
        params = None if n is None else {"n": str(n)}
        data = await get_capped(session, self._bases[url] + FEED_PATH, self._max_feed_bytes, params)
        parsed = parse_feed(data, self._clock(), max_bytes=self._max_feed_bytes)
        if isinstance(parsed, FeedRejected):
            raise MirrorError(f"bad feed ({parsed.reason.value}): {parsed.detail}")
        dropped = [MirrorRejection(url, r.index, r.reason, r.detail) for r in parsed.rejected]
        return list(parsed.records.values()), dropped

    async def publish(self, record: VpnRecord | bytes) -> PublishResult:
        """Send a signed record to every mirror at once; fails only if none took it."""
        raw = record.raw if isinstance(record, VpnRecord) else bytes(record)
        if len(raw) > MAX_RECORD_BYTES:
            raise DiscoveryError(f"a record is at most {MAX_RECORD_BYTES} bytes")
        async with (
            open_session(self._context, self._timeout_s) as session,
            asyncio.TaskGroup() as tg,
        ):
            tasks = {
                url: tg.create_task(self._publish_one(session, url, raw), name=f"publish {url}")
                for url in self.urls
            }
        outcomes = {url: task.result() for url, task in tasks.items()}
        accepted = tuple(url for url, failure in outcomes.items() if failure is None)
        failures = tuple(f for f in outcomes.values() if f is not None)
        if not accepted:
            raise DiscoveryUnavailable(_summary("no discovery mirror took the record", failures))
        return PublishResult(accepted, failures)

    async def _publish_one(
        self, session: aiohttp.ClientSession, url: str, raw: bytes
    ) -> MirrorFailure | None:
        try:
            await post_record(session, self._bases[url], raw)
        except MirrorError as exc:
            return MirrorFailure(url, str(exc))
        return None


def _summary(what: str, failures: Sequence[MirrorFailure]) -> str:
    tried = "; ".join(f"{f.url}: {f.reason}" for f in failures) or "none tried"
    return f"{what} ({tried}); check the network and discovery.urls, then try again"
