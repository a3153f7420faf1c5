"""Audit reports through the DHT (asyncio adapter; the decisions are `rms.audit.dhtrecord`'s).

A report this node signs for its CFS (`POST /v1/audits/sign`) is put in the DHT as an `audit`
record under `audit_key(provider)`, signed by the node key; the DHT core republishes it until
the report is stale, when it is withdrawn. Every `FETCH_S` the node looks up the records
about the providers on its watchlist - itself, so its owner is warned, and the providers
its CFS audited lately - and feeds the new, verified reports to the audit service (and so
to the reputation core). `POST /v1/audits/fetch` fetches at once. docs/accounting.md,
"Publication in the DHT".
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from rms.audit import report as rep
from rms.audit.dhtrecord import AuditInbox, Watchlist, audit_key, record_fields
from rms.audit.service import AuditService
from rms.daemon import Daemon
from rms.dht.records import AUDIT, RecordError, sign_record
from rms.dht.service import DhtBusy, DhtService
from rms.entitlement.control import json_body
from rms.identity import NodeIdentity

__all__ = ["FETCH_S", "AuditPublisher", "attach_publication"]

FETCH_S = 300.0  # how often reports about the watched providers are looked up
log = structlog.get_logger("rms.audit")


class AuditPublisher:
    """Puts this node's audit reports in the DHT and takes in everyone else's."""

    def __init__(
        self,
        audits: AuditService,
        dht: DhtService,
        identity: NodeIdentity,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.audits, self.dht, self.identity, self._clock = audits, dht, identity, clock
        self.inbox = AuditInbox(identity.public_key)
        for held in audits.history:  # kept across restarts: not new when read back
            self.inbox.seen(held)
        self.watch = Watchlist(identity.public_key)
        self.counters: Counter[str] = Counter()
        self._published: dict[bytes, tuple[int, int]] = {}  # provider -> (seq, report at)

    async def publish(self, report: rep.AuditReport) -> int:
        """Put `report` (this node is its auditor) in the DHT; how many nodes stored it."""
        now = self._clock()
        self.watch.audited(report.provider, report.at)
        held = self._published.get(report.provider, (0, 0))
        seq = max(int(now * 1000), held[0] + 1)  # two reports within one millisecond
        ttl = self.dht.core.config.policy.dht_record_ttl_s
        try:
            raw = sign_record(self.identity, AUDIT, seq, now + ttl, record_fields(report))
            stored = (await self.dht.put(raw)).stored
        except (RecordError, DhtBusy, TimeoutError) as e:
            self.counters["publish_failed"] += 1
            log.warning("audit.publish_failed", provider=report.provider.hex()[:16], error=str(e))
            return 0
        self._published[report.provider] = (seq, report.at)
        self.counters["published" if stored else "publish_failed"] += 1
        return stored

    async def fetch(self, providers: list[bytes] | None = None) -> dict[str, int]:
        """Look up the reports about `providers` (default: the watchlist) and take new ones."""
        now = self._clock()
        wanted = self.watch.providers(now) if providers is None else providers
        found = await asyncio.gather(*(self._fetch_one(p, now) for p in wanted))
        self.counters["fetches"] += 1
        return {"providers": len(wanted), "records": sum(n for n, _ in found),
                "taken": sum(t for _, t in found)}  # fmt: skip

    async def _fetch_one(self, provider: bytes, now: float) -> tuple[int, int]:
        try:
            result = await self.dht.find_records(audit_key(provider))
        except (DhtBusy, TimeoutError):
            self.counters["lookups_failed"] += 1
            return 0, 0
        taken = 0
        for report in self.inbox.take(provider, result.records, now):
            try:
                self.audits.receive(report.signed)
                taken += 1
            except rep.ReportError:  # the clock moved on between the two checks
                self.counters["refused"] += 1
        return len(result.records), taken

    def withdraw_stale(self) -> None:
        """Stop republishing reports about providers this node no longer audits."""
        limit = self._clock() - self.inbox.max_age_s
        for provider, (_, at) in list(self._published.items()):
            if at < limit:
                self.dht.withdraw(audit_key(provider))
                del self._published[provider]

    async def run(self) -> None:
        """The daemon task: fetch the watched providers' reports every FETCH_S."""
        while True:
            await asyncio.sleep(FETCH_S)
            self.withdraw_stale()
            await self.fetch()

    def status(self) -> dict[str, Any]:
        """The `audit_dht` status section."""
        return {
            **self.inbox.status(),
            "watched": len(self.watch.providers(self._clock())),
            "publishing": len(self._published),
            **dict(sorted(self.counters.items())),
        }


def routes(publisher: AuditPublisher) -> list[web.RouteDef]:
    """`POST /v1/audits/fetch` with `{}` or `{"provider": HEX}`: look the reports up now."""

    async def fetch(request: web.Request) -> web.Response:
        body = await json_body(request, 256)
        if set(body) - {"provider"}:
            raise web.HTTPBadRequest(text='expected {} or {"provider": HEX}')
        wanted = None if "provider" not in body else [_key(body["provider"])]
        return web.json_response(await publisher.fetch(wanted))

    return [web.post("/v1/audits/fetch", fetch)]


def _key(value: object) -> bytes:
    if isinstance(value, str) and len(value) == 64:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    raise web.HTTPBadRequest(text="provider is 64 hex digits (a node key)")


def attach_publication(
    audits: AuditService, dht: DhtService, identity: NodeIdentity, daemon: Daemon
) -> AuditPublisher:
    """Publish this node's reports in the DHT and fetch others' (status section, task, route)."""
    publisher = AuditPublisher(audits, dht, identity)
    audits.publish = publisher.publish
    daemon.board.add_section("audit_dht", publisher.status)
    daemon.add_service("audit-dht", publisher.run)
    daemon.add_routes(routes(publisher))
    return publisher
