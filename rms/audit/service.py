"""The daemon's audit service: keeps audit reports, weighs them, warns the owner.

Reports arrive through the control API - signed by the local CFS's node key via
`POST /v1/audits/sign` (the CFS never holds the key), or already signed by another node via
`POST /v1/audits/reports` - and are kept in `<state_dir>/audits.jsonl`, one signed report a
line (the newest `MAX_KEPT`). On start the file is replayed through the reputation core, so
standings survive restarts. When this node's own provider is warned, the status says so and
what to do; while it is penalised, its entitlement is multiplied by the penalty factor.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from rms.audit import report as rep
from rms.audit.reputation import Reputation, Standing, StandingChanged
from rms.daemon import Daemon
from rms.entitlement.arithmetic import exact
from rms.entitlement.control import json_body
from rms.entitlement.service import EntitlementService
from rms.entitlement.state import read_capped, write_atomic
from rms.identity import NodeIdentity

AUDITS_NAME = "audits.jsonl"
MAX_KEPT = 10_000
MAX_FILE_BYTES = 2 * MAX_KEPT * (rep.MAX_REPORT_BYTES + 1)  # compacted at 2 x MAX_KEPT lines
TICK_S = 60.0
log = structlog.get_logger("rms.audit")


class AuditService:
    """Audit history and reputation of the providers this node has heard of."""

    def __init__(
        self,
        state_dir: Path,
        identity: NodeIdentity,
        entitlement: EntitlementService,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = state_dir / AUDITS_NAME
        self._identity = identity
        self.entitlement = entitlement
        self._clock = clock
        self.reputation = Reputation(entitlement.policy)
        self.history: deque[rep.AuditReport] = deque(maxlen=MAX_KEPT)
        self.refused = 0
        # Set when the DHT runs (rms.audit.publish): puts a report this node signed.
        self.publish: Callable[[rep.AuditReport], Awaitable[int]] | None = None
        self._lines = 0  # lines in the file, to know when to compact it
        self._replay()

    def _replay(self) -> None:
        data = read_capped(self._path, MAX_FILE_BYTES) or b""
        now = self._clock()
        lines = data.splitlines()
        self._lines = len(lines)
        for line in lines[-MAX_KEPT:]:
            try:
                report = rep.check(json.loads(line), now)
            except (ValueError, RecursionError, rep.ReportError):
                self.refused += 1  # a damaged line costs that report, not the history
                continue
            self._take(report, report.at)

    def own_body_signed(self, body: object) -> rep.AuditReport:
        """Sign a report body this node's CFS made (this node is the auditor) and keep it."""
        if not isinstance(body, dict):
            raise rep.ReportError("a report body must be an object")
        return self.receive(rep.sign_report(body, self._identity))

    def receive(self, signed: object) -> rep.AuditReport:
        """Verify a signed report and keep it; ReportError when refused."""
        report = rep.check(signed, self._clock())
        self._take(report, self._clock())
        line = json.dumps(report.signed, sort_keys=True, separators=(",", ":")).encode()
        self._append(line + b"\n")
        return report

    def _take(self, report: rep.AuditReport, now: float) -> None:
        self.history.append(report)
        self._handle(self.reputation.add(report, now))

    def _append(self, line: bytes) -> None:
        if self._lines >= 2 * MAX_KEPT:
            kept = [
                json.dumps(r.signed, sort_keys=True, separators=(",", ":")) for r in self.history
            ]
            write_atomic(self._path, ("\n".join(kept) + "\n").encode())
            self._lines = len(kept)
            return
        with self._path.open("ab") as f:
            f.write(line)
        self._lines += 1

    def _handle(self, changes: list[StandingChanged]) -> None:
        own = self._identity.public_key
        for change in changes:
            mine = change.provider == own
            log.warning(
                "audit.standing",
                provider=change.provider.hex()[:16],
                own=mine,
                old=change.old.value,
                new=change.new.value,
                reason=change.reason,
            )
        self.entitlement.reputation_factor = exact(self.reputation.factor(own))

    async def run(self) -> None:
        """The daemon task: let time pass for decay and grace periods."""
        while True:
            await asyncio.sleep(TICK_S)
            self.reputation.policy = self.entitlement.policy  # a newer signed policy applies
            self._handle(self.reputation.tick(self._clock()))

    def problem(self) -> str | None:
        """A health problem when this node's own provider is warned or penalised."""
        standing = self.reputation.standing(self._identity.public_key)
        if standing is Standing.WARNED:
            days = self.reputation.policy.audit_grace_s / 86400
            return (
                "clients report failed audits of this node's storage: check the disks and "
                f"the Volume Provider; a penalty follows in {days:g} days unless audits pass"
            )
        if standing is Standing.PENALISED:
            return "penalised for failed audits: entitlement lowered until audits pass again"
        return None

    def providers(self) -> list[dict[str, Any]]:
        """Every provider heard of, with its standing."""
        return [
            {
                "provider": key.hex(),
                **self.reputation.summary(key),
                "placement_weight": self.reputation.factor(key),  # what the CFS multiplies by
            }
            for key in sorted(self.reputation.records)
        ]

    def summary(self) -> dict[str, Any]:
        """The `audits` status section."""
        standings = [r.standing for r in self.reputation.records.values()]
        return {
            "own": self.reputation.summary(self._identity.public_key),
            "providers": len(standings),
            "warned": standings.count(Standing.WARNED),
            "penalised": standings.count(Standing.PENALISED),
            "reports": len(self.history),
            "replays_ignored": self.reputation.replays,
        }

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest reports first, as their bodies."""
        return [dict(r.signed["body"]) for r in list(self.history)[-limit:][::-1]]


def routes(service: AuditService) -> list[web.RouteDef]:
    """`GET /v1/audits`, `POST /v1/audits/sign`, `POST /v1/audits/reports`."""

    async def get_audits(request: web.Request) -> web.Response:
        raw = request.query.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise web.HTTPBadRequest(text="limit is a whole number in 1..1000")
        return web.json_response(
            {
                **service.summary(),
                "standings": service.providers(),
                "history": service.recent(int(raw)),
            }
        )

    async def sign(request: web.Request) -> web.Response:
        value = await json_body(request, rep.MAX_REPORT_BYTES)
        if set(value) != {"body"}:
            raise web.HTTPBadRequest(text='expected {"body": {...}}')
        report = _taken(lambda: service.own_body_signed(value["body"]))
        # the node's own reports go to the DHT, where every node looks for them
        published = None if service.publish is None else await service.publish(report)
        return web.json_response({**_described(report), "published": published})

    async def receive(request: web.Request) -> web.Response:
        value = await json_body(request, rep.MAX_REPORT_BYTES)
        return web.json_response(_described(_taken(lambda: service.receive(value))))

    return [
        web.get("/v1/audits", get_audits),
        web.post("/v1/audits/sign", sign),
        web.post("/v1/audits/reports", receive),
    ]


def _taken(take: Callable[[], rep.AuditReport]) -> rep.AuditReport:
    try:
        return take()
    except rep.ReportError as e:
        raise web.HTTPBadRequest(text=str(e)) from None


def _described(report: rep.AuditReport) -> dict[str, Any]:
    return {"report": report.signed, "passed": report.passed}


def attach(service: AuditService, daemon: Daemon) -> None:
    """Add the audits section, the own-standing check, the tick task and the routes."""
    daemon.board.add_section("audits", service.summary)
    daemon.board.add_check("audits", service.problem)
    daemon.add_service("audits", service.run)
    daemon.add_routes(routes(service))
