"""The Volume Provider service: the protocol core, its exports, and the RMS, as one process.

Tasks (one `asyncio.TaskGroup`, each named; STYLE.md 7):

- `requests`: the long poll of storage requests from the local RMS; each one the core can
  serve is answered with an offer through the RMS;
- `addresses`: follows the node's management addresses (from `rms status`): the offers
  name them and the claim server listens on them;
- `expiry`: runs the core's timer; an expired lease is unexported and wiped;
- `status`: publishes the `volumes` section of `rms status` every `STATUS_EVERY_S`, and
  reports the measured contribution (capacity with room on disk, bytes leased) to the RMS;
- `watch`: every `WATCH_EVERY_S`, starts tgtd again if it died and exports again every
  lease whose target or nested link is gone (the data is kept).

Every message and timer runs under one lock: the core and the exports change together, so
a retried claim that arrives while its volume is being exported waits and then gets the
same grant. Leases are saved after every change and restored at start; on the way out every
export is taken down with its data kept (docs/volumes.md, "Restarts").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable
from ipaddress import IPv6Address

import structlog

from rms.control.client import ControlError, DaemonUnavailable
from rms.identity import NodeIdentity
from rms.volumes import (
    Action,
    Export,
    Lease,
    OfferTerms,
    ProviderCore,
    ProviderSettings,
    Unexport,
)
from rms.wg.errors import WireGuardError
from volume_provider.config import MIB, ProviderConfig, lease_naming
from volume_provider.export import Exporter, ExportError, VolumeGone
from volume_provider.leasefile import LeaseFile
from volume_provider.rmslink import RmsLink, measured_body, offer_body, parse_request
from volume_provider.server import ClaimServer
from volume_provider.target.model import TargetError

__all__ = ["ProviderService", "settings_from"]

ADDRESSES_EVERY_S = 10.0
WATCH_EVERY_S = 5.0
STATUS_EVERY_S = 10.0
RETRY_S = 2.0

log = structlog.get_logger("volume_provider")


def settings_from(config: ProviderConfig, addresses: tuple[IPv6Address, ...]) -> ProviderSettings:
    """The core's settings from the configuration and the current management addresses."""
    p = config.provider
    iqn_base, chap_secret_len = lease_naming(config)
    return ProviderSettings(
        capacity=p.capacity_mib * MIB,
        location=p.location_uuid.bytes,
        network=p.network_uuid.bytes,
        addresses=addresses,
        port=p.port,
        wg_port_first=p.wg_port_first,
        wg_port_count=p.wg_port_count,
        lease_s=p.lease_s,
        offer_ttl_s=p.offer_ttl_s,
        min_size=p.min_volume_mib * MIB,
        max_per_request=p.max_per_request,
        price=p.price,
        reliability=p.reliability,
        iqn_base=iqn_base,
        chap_secret_len=chap_secret_len,
    )


class ProviderService:
    """One provider: core, exporter, claim server and RMS link."""

    def __init__(
        self,
        config: ProviderConfig,
        identity: NodeIdentity,
        exporter: Exporter,
        rms: RmsLink,
        *,
        tgtd: Callable[[], Awaitable[bool]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.exporter = exporter
        self.rms = rms
        self._tgtd = tgtd  # makes sure tgtd answers; True when it had to start it again
        self._clock = clock
        fixed = tuple(IPv6Address(a) for a in config.provider.listen)
        self._fixed = fixed
        self.core = ProviderCore(identity, settings_from(config, fixed), random.SystemRandom())
        self.server = ClaimServer(self.handle_frame, config.provider.port)
        self.leases = LeaseFile(config.provider.lease_file)
        self._lock = asyncio.Lock()
        self._timer_changed = asyncio.Event()
        self.ready = asyncio.Event()  # set once leftovers are cleared and tasks started
        self.rms_problem: str | None = None  # why the RMS cannot be reached, if it cannot
        # With capacity_mib = 0 the capacity follows the node's offer: unknown until read.
        self._capacity_known = bool(config.provider.capacity_mib)

    async def run(self) -> None:
        """Restore saved leases, serve until cancelled; exports are taken down on the way out
        (their data kept: the leases are saved and restored by the next start)."""
        kept = self.core.restore(self.leases.load(), self._clock())
        wiped = await self.exporter.clear_leftovers({lease.volume_id for lease in kept})
        for lease in kept:
            await self._export_restored(lease)
        self._save()
        log.info(
            "provider.started",
            restored=len(self.core.leases),
            leftovers_wiped=wiped,
            capacity=self.core.settings.capacity,
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._requests(), name="requests")
                tasks.create_task(self._addresses(), name="addresses")
                tasks.create_task(self._expiry(), name="expiry")
                tasks.create_task(self._status(), name="status")
                tasks.create_task(self._watch(), name="watch")
                self.ready.set()
        finally:
            await self.server.close()
            await self._shutdown()

    # -- protocol ---------------------------------------------------------------------------

    async def handle_frame(self, data: bytes) -> bytes | None:
        """One client message in, the reply out (after the exports it needs are done)."""
        async with self._lock:
            outcome = self.core.handle(data, self._clock())
            if outcome.event:
                log.info("provider.message", outcome=outcome.event)
            try:
                for action in outcome.actions:
                    failed = await self._perform(action)
                    if failed is not None:
                        return failed
            finally:
                if outcome.actions or outcome.event == "renewed":
                    self._save()
            self._timer_changed.set()
            return outcome.reply

    async def _perform(self, action: Action) -> bytes | None:
        if isinstance(action, Unexport):
            await self.exporter.unexport(action)
            return None
        return await self._export(action)

    async def _export_restored(self, lease: Lease) -> None:
        """Export a kept volume again (restart, repair); a lease whose file is gone ends,
        one that fails otherwise stays, and the watch tries again."""
        try:
            await self.exporter.export(lease, restored=True)
        except VolumeGone as e:
            log.error("provider.volume_gone", volume=lease.volume_id.hex(), reason=str(e))
            ended = self.core.end(lease.volume_id, "volume_gone", self._clock())
            if ended is not None:
                await self.exporter.unexport(ended)
            return
        except ExportError:
            return
        self.core.export_done(lease.volume_id)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            async with self._lock:
                try:
                    await self._repair()
                except (TargetError, WireGuardError) as e:
                    log.warning("provider.watch_failed", reason=str(e))

    async def _repair(self) -> None:
        if self._tgtd is not None and await self._tgtd():
            self.core.counts["tgtd_restarts"] += 1
        missing = await self.exporter.missing(list(self.core.leases.values()))
        for lease in missing:
            self.core.counts["repaired"] += 1
            await self._export_restored(lease)
        if missing:
            self._save()

    def _save(self) -> None:
        try:
            self.leases.save(list(self.core.leases.values()))
        except OSError as e:  # the leases go on in memory; the next change retries
            log.error("provider.leases_not_saved", reason=e.strerror)

    async def _export(self, action: Export) -> bytes | None:
        volume_id = action.lease.volume_id
        try:
            await self.exporter.export(action.lease)
        except ExportError:
            failed = self.core.export_failed(volume_id, self._clock())
            for undo in failed.actions:
                if isinstance(undo, Unexport):
                    await self.exporter.unexport(undo)
            return failed.reply
        self.core.export_done(volume_id)
        return None

    # -- tasks ------------------------------------------------------------------------------

    async def _requests(self) -> None:
        after = 0
        while True:
            try:
                items, after = await self.rms.requests(after)
                self._rms_problem(None)
                for item in items:
                    await self._consider(item)
            except (DaemonUnavailable, ControlError) as e:
                self._rms_problem(str(e))
                await asyncio.sleep(RETRY_S)

    def _rms_problem(self, problem: str | None) -> None:
        """Log when the RMS becomes unreachable and when it is back, not every retry."""
        if problem != self.rms_problem:
            if problem is None:
                log.info("provider.rms_back")
            else:
                log.warning("provider.rms_unavailable", reason=problem)
            self.rms_problem = problem

    async def _consider(self, item: dict[str, object]) -> None:
        request = parse_request(item)
        if request is None:
            self.core.counts["malformed_request"] += 1
            return
        async with self._lock:
            terms = self.core.consider(request, self._clock())
            addresses = list(self.core.settings.addresses)
        if not isinstance(terms, OfferTerms):
            log.debug("provider.not_offered", reason=str(terms))
            return
        if not addresses:
            self.core.counts["no_address"] += 1
            return
        try:
            await self.rms.answer(offer_body(str(item["handle"]), terms, addresses))
        except ControlError as e:  # the request aged out meanwhile, typically
            log.info("provider.answer_refused", reason=str(e))

    async def _addresses(self) -> None:
        while True:
            found = self.core.settings.addresses
            try:
                addresses, contributed = await self.rms.node()
                found = tuple(self._fixed or addresses)
                self._follow_contribution(contributed)
            except (DaemonUnavailable, ControlError) as e:
                self._rms_problem(str(e))
            if found != self.core.settings.addresses:
                log.info("provider.addresses", addresses=[str(a) for a in found])
            self.core.set_addresses(found)
            await self.server.set_addresses(found)
            await asyncio.sleep(ADDRESSES_EVERY_S)

    def _follow_contribution(self, contributed: int | None) -> None:
        """With capacity_mib = 0 the capacity is what the node contributes (`rms contribute`):
        less than is leased only stops new offers, a lease is never cut short."""
        if self.config.provider.capacity_mib or contributed is None:
            return
        self._capacity_known = True
        if contributed != self.core.settings.capacity:
            log.info("provider.capacity", capacity=contributed)
            self.core.set_capacity(contributed)

    async def _expiry(self) -> None:
        while True:
            when = self.core.next_timer()
            delay = 3600.0 if when is None else max(0.0, when - self._clock())
            self._timer_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_changed.wait(), delay)
            async with self._lock:
                ended = self.core.handle_timer(self._clock())
                for action in ended:
                    log.info("provider.lease_ended", volume=action.volume_id.hex(), why=action.why)
                    await self.exporter.unexport(action)
                if ended:
                    self._save()

    async def _status(self) -> None:
        while True:
            try:
                await self.rms.publish(self.status())
                measured = self.measurement()
                if measured is not None:
                    await self.rms.report(measured)
            except (DaemonUnavailable, ControlError) as e:
                log.debug("provider.status_not_published", reason=str(e))
            await asyncio.sleep(STATUS_EVERY_S)

    def measurement(self) -> dict[str, int | None] | None:
        """What the provider really contributes, or None while it cannot tell (its capacity
        still to be read from the RMS, or its volume directory's file system unreadable)."""
        if not self._capacity_known:
            return None
        store = self.exporter.store
        try:
            fs = os.statvfs(store.data_dir)
        except OSError as e:
            log.warning("provider.store_unmeasured", reason=e.strerror)
            return None
        free = fs.f_bavail * fs.f_frsize
        return measured_body(self.core.settings.capacity, self.core.used, store.allocated(), free)

    def status(self) -> dict[str, object]:
        """The `volumes` section: capacity, leases, listeners and counters; no secrets."""
        section = self.core.status(self._clock())
        section.update(self.server.status())
        section["allocated"] = self.exporter.store.allocated()
        return section

    async def _shutdown(self) -> None:
        for lease in list(self.core.leases.values()):
            await self.exporter.suspend(lease)
        self._save()
