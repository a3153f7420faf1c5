"""The CFS's audit loop (asyncio adapter): scrub the pool, report on every provider.

The decisions are `cfs.scrub.ScrubRounds`'s; this module reads `zpool status`, starts the
scrub it asks for, and turns each finding into a report the node signs and publishes in
the DHT (`POST /v1/audits/sign`: the CFS never holds the node key). Reports name providers
by node key; the CFS knows them by node id, so each id is looked up once in the DHT
(`POST /v1/dht/get {"node_id"}`) and the key checked against the id. docs/accounting.md,
"The CFS's audits".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from cfs.healing import SlotState
from cfs.scrub import Finding, Member, ScrubRounds, provider_key
from cfs.zfs.status import ZfsError
from rms.control.client import ControlClient, ControlError, DaemonUnavailable

if TYPE_CHECKING:
    from cfs.service import Cfs

__all__ = ["AUDIT_EVERY_S", "ScrubAuditor"]

AUDIT_EVERY_S = 3600.0  # a scrub an hour: rounds of the reputation core (docs/accounting.md)
POLL_S = 10.0  # while a scrub runs, how often its end is looked for
log = structlog.get_logger("cfs.audit")


class ScrubAuditor:
    """Runs scrub rounds on a built pool and has the node sign and publish the reports."""

    def __init__(
        self,
        control: ControlClient,
        auditor: bytes,
        *,
        every_s: float = AUDIT_EVERY_S,
        poll_s: float = POLL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.control, self.auditor, self.clock = control, auditor, clock
        self.rounds = ScrubRounds(every_s, clock())
        self.poll_s = poll_s
        self.keys: dict[str, bytes] = {}  # provider node id -> node key
        self.reported = 0
        self.failed_reports = 0

    async def run(self, cfs: Cfs, stop: asyncio.Event) -> None:
        """Audit until stop is set."""
        while not stop.is_set():
            await self.step(cfs)
            wait = min(self.poll_s, max(0.0, self.rounds.next_timer() - self.clock()))
            if self.rounds.started is not None:
                wait = self.poll_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def step(self, cfs: Cfs) -> list[Finding]:
        """One look at the pool: start a scrub when due, report when one of ours ended."""
        if cfs.healer is None:
            return []
        name, now = cfs.spec.name, self.clock()
        try:
            status = await cfs.zfs.status(name)
            allocated = (await cfs.zfs.usage(name))[0]
        except ZfsError as e:
            log.info("cfs.audit_status_failed", reason=str(e))
            return []
        slots = cfs.healer.slots
        members = [
            Member(s.lease.provider.provider, s.lease.lease_id, s.device)
            for s in slots if s.state is SlotState.ONLINE
        ]  # fmt: skip
        start, findings = self.rounds.step(status, members, allocated, now)
        if start:
            try:
                await cfs.zfs.scrub(name)
                log.info("cfs.audit_scrub", pool=name)
            except ZfsError as e:
                log.warning("cfs.audit_scrub_failed", reason=str(e))
                self.rounds.scrub_failed(now)
        for finding in findings:
            await self.report(finding)
        return findings

    async def report(self, finding: Finding) -> dict[str, Any] | None:
        """Have the node sign the finding's report and publish it; None if it could not."""
        try:
            key = await self._key(finding.provider)
            answer = await self.control.post_json(
                "/v1/audits/sign", {"body": finding.body(self.auditor, key)}
            )
        except (ControlError, DaemonUnavailable, LookupError) as e:
            self.failed_reports += 1
            log.warning("cfs.audit_report_failed", provider=finding.provider[:16], reason=str(e))
            return None
        self.reported += 1
        log.info("cfs.audit_reported", provider=finding.provider[:16], failed=finding.failed,
                 checked=finding.checked, published=answer.get("published"))  # fmt: skip
        return answer

    async def _key(self, node_id: str) -> bytes:
        if node_id not in self.keys:
            answer = await self.control.post_json("/v1/dht/get", {"node_id": node_id})
            key = provider_key(node_id, answer)
            if key is None:  # not found, or not the key of that id: no report
                raise LookupError(f"no node key found for provider {node_id[:16]}")
            self.keys[node_id] = key
        return self.keys[node_id]
