"""Replication between mirrors: push each new record, and pull what was missed (adapter).

Push: every record the store takes (from a guardian or a peer) is queued for every peer and
POSTed to it, exactly as a guardian publishes. A peer that already has it answers
"unchanged" and pushes no further, so a record floods the mirrors once and stops.

Anti-entropy: every `anti_entropy_s` (with jitter, and once at start) the mirror fetches
each peer's digest; if the peer holds a VPN we lack or a higher rank, it pulls the peer's
records and verifies each one; records the peer lacks are pushed to it. A mirror that was
down, or is new with an empty store, catches up within one round.

Nothing here trusts a peer: every record goes through Mirror.receive like any other. A
failed request is logged at debug and forgotten; the next round repairs what it lost.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiohttp
import structlog

from rms.discovery import VpnRecord
from rms.discovery.client import MirrorError, get_capped, mirror_base, post_record
from vpn_discovery.mirror import Mirror, SyncError, decode_digest

QUEUE_SIZE = 1024  # records waiting for one peer; beyond it anti-entropy catches up
JITTER = 0.2
DIGEST_ENTRY_BYTES = 40  # [bin 16, int, int] packs to at most 37 bytes

log = structlog.get_logger("vpn_discovery")


@dataclass(frozen=True, slots=True)
class Peer:
    """Another mirror: its URL as configured and its base URL."""

    url: str
    base: str


class Replicator:
    """Pushes new records to the peers and runs anti-entropy rounds with them."""

    def __init__(
        self,
        mirror: Mirror,
        urls: Sequence[str],
        session: aiohttp.ClientSession,
        *,
        interval_s: float,
        max_sync_bytes: int,
        rng: random.Random,
        clock: Callable[[], float],
    ) -> None:
        self.mirror = mirror
        self.peers = tuple(Peer(url, mirror_base(url)) for url in urls)
        self.counts = mirror.counts  # one set of counters, shown by GET /health
        self._session = session
        self._interval_s = interval_s
        self._max_sync_bytes = max_sync_bytes
        self._rng = rng
        self._clock = clock
        self._queues: dict[str, asyncio.Queue[bytes]] = {
            p.url: asyncio.Queue(QUEUE_SIZE) for p in self.peers
        }

    def announce(self, record: VpnRecord) -> None:
        """Queue a newly stored record for every peer."""
        for url, queue in self._queues.items():
            try:
                queue.put_nowait(record.raw)
            except asyncio.QueueFull:
                self.counts["push.dropped"] += 1
                log.debug("push.dropped", peer=url, vpn=str(record.vpn_id))

    async def push_loop(self, peer: Peer) -> None:
        """Forever: send the peer each queued record."""
        queue = self._queues[peer.url]
        while True:
            raw = await queue.get()
            try:
                await post_record(self._session, peer.base, raw)
                self.counts["push.sent"] += 1
            except MirrorError as exc:
                self.counts["push.failed"] += 1
                log.debug("push.failed", peer=peer.url, error=str(exc))

    async def anti_entropy_loop(self) -> None:
        """Forever: one anti-entropy round now, then every interval with jitter."""
        while True:
            await self.round()
            factor = self._rng.uniform(1 - JITTER, 1 + JITTER)
            await asyncio.sleep(self._interval_s * factor)

    async def round(self) -> None:
        """Sync with every peer once, in random order."""
        peers = list(self.peers)
        self._rng.shuffle(peers)
        for peer in peers:
            try:
                await self.sync(peer)
            except MirrorError as exc:
                self.counts["sync.failed"] += 1
                log.debug("sync.failed", peer=peer.url, error=str(exc))

    async def sync(self, peer: Peer) -> None:
        """Compare digests with one peer, pull if it has more, push what it lacks."""
        limit = self.mirror.store.limits.max_records
        cap = min(self._max_sync_bytes, limit * DIGEST_ENTRY_BYTES + 16)
        peer_digest = decode_digest(
            await get_capped(self._session, peer.base + "digest.msgpack", cap), limit
        )
        if isinstance(peer_digest, SyncError):
            raise MirrorError(f"bad digest: {peer_digest.detail}")
        plan = self.mirror.plan(peer_digest)
        if plan.pull:
            await self._pull(peer)
        for record in plan.push:
            await post_record(self._session, peer.base, record.raw)
            self.counts["sync.pushed"] += 1

    async def _pull(self, peer: Peer) -> None:
        data = await get_capped(self._session, peer.base + "records.msgpack", self._max_sync_bytes)
        report = self.mirror.receive_bundle(data, self._clock())
        if report.error is not None:
            raise MirrorError(f"bad records bundle: {report.error}")
        self.counts["sync.pulled"] += len(report.changed)
        if report.changed or report.refused:
            log.info(
                "sync.pulled", peer=peer.url, stored=len(report.changed), refused=report.refused
            )
        for record in report.changed:
            self.announce(record)
