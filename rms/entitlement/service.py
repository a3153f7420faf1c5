"""The daemon's entitlement service: uptime heartbeats, the contribution, the status section.

What it keeps in the state directory:
- `uptime.json`: the uptime history (rms.entitlement.availability), written each heartbeat;
- `contribution.json`: the offer as changed through the control API (the web UI's form) and
  the Volume Provider's latest measurement (leased and audited bytes); the config's
  `[contribution]` gives the offer until the first change.
A damaged file is set aside as `NAME.damaged` and the service starts that part afresh: losing
the uptime history costs the node nothing it can claim (availability is recomputed from now).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from math import isfinite
from pathlib import Path
from typing import Any

import structlog

from rms.config import Config
from rms.entitlement.arithmetic import (
    Contribution,
    ContributionError,
    Entitlement,
    entitlement,
    parse_size,
    volume_size,
)
from rms.entitlement.availability import HistoryError, UptimeHistory
from rms.entitlement.state import PolicyFile, read_capped, set_aside, write_atomic
from rms.policy import Policy

UPTIME_NAME = "uptime.json"
CONTRIBUTION_NAME = "contribution.json"
CONTRIBUTION_FORMAT = "truecloud-contribution/1"
MAX_STATE_BYTES = 512 * 1024  # the uptime history's cap, with room
OFFER_KEYS = ("storage_bytes", "cpu_millicores")
MEASURE_KEYS = ("capacity_bytes", "leased_bytes", "audited_bytes")
MEASURE_REQUIRED = ("capacity_bytes", "leased_bytes")  # audited_bytes: null or left out
log = structlog.get_logger("rms.entitlement")


def configured_offer(config: Config) -> Contribution:
    """The `[contribution]` section as a Contribution (validated by the config loader)."""
    cpu = round(config.contribution.cpu * 1000)
    return Contribution(storage_bytes=parse_size(config.contribution.storage), cpu_millicores=cpu)


def measured_report(value: object) -> dict[str, int | None]:
    """The Volume Provider's report, checked: `capacity_bytes` and `leased_bytes` whole numbers
    in [0, 2**63 - 1], `audited_bytes` one too (at most `leased_bytes`) or null/absent, and
    nothing else. ContributionError says what is wrong."""
    if not isinstance(value, dict):
        raise ContributionError("the report must be a JSON object")
    unknown = sorted(set(value) - set(MEASURE_KEYS))
    missing = [k for k in MEASURE_REQUIRED if k not in value]
    if unknown or missing:
        raise ContributionError(
            f"expected {{{', '.join(MEASURE_KEYS)}}}: "
            + ", ".join([*(f"unknown {k[:40]!r}" for k in unknown), *(f"no {k}" for k in missing)])
        )
    report: dict[str, int | None] = {k: value[k] for k in MEASURE_KEYS if k in value}
    report.setdefault("audited_bytes", None)
    for name in MEASURE_REQUIRED:
        if report[name] is None:
            raise ContributionError(f"{name} must be a whole number, not null")
    Contribution(**{k: v for k, v in report.items() if v is not None})  # each in range
    audited, leased = report["audited_bytes"], report["leased_bytes"]
    if audited is not None and leased is not None and audited > leased:
        raise ContributionError("audited_bytes cannot exceed leased_bytes")
    return report


class EntitlementService:
    """Measures availability, keeps the contribution and computes the entitlement."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.time,
        policy_file: PolicyFile | None = None,
    ) -> None:
        self._dir = config.node.state_dir
        self._clock = clock
        # The daemon's (rms.daemon), whose policy every service runs with; its own in tests.
        self.policy_file = policy_file or PolicyFile.from_config(config, clock)
        self.policy_file.start()
        self.history = _load_history(self._dir / UPTIME_NAME)
        self.contribution, self.source, self.measured_at = _load_contribution(
            self._dir / CONTRIBUTION_NAME, configured_offer(config)
        )
        self.reputation_factor = Fraction(1)  # the audit core lowers it while penalised

    @property
    def policy(self) -> Policy:
        """The policy in force (the daemon's, chosen at start)."""
        return self.policy_file.policy

    def beat(self) -> bytes:
        """Record a heartbeat; returns the history file's new content."""
        self.history.beat(self._clock(), self.policy)
        return self.history.to_json()

    async def run(self) -> None:
        """The daemon task: a heartbeat (and a look for a new policy document: verified and
        kept, applied at the next start) every interval. The file is written (fsync) in a
        worker thread: a slow disk must not stall the loop."""
        path = self._dir / UPTIME_NAME
        while True:
            self.policy_file.refresh()
            try:
                await asyncio.to_thread(write_atomic, path, self.beat())
            except OSError as e:
                log.warning("uptime.write_failed", error=e.strerror)
            await asyncio.sleep(self.policy.uptime_heartbeat_s)

    def compute(self, contribution: Contribution | None = None) -> Entitlement:
        """The entitlement for this (or the current) contribution, now."""
        now = self._clock()
        return entitlement(
            self.policy,
            contribution or self.contribution,
            self.history.availability(now, self.policy),
            first_seen=self.history.first_seen,
            now=now,
            reputation_factor=self.reputation_factor,
        )

    def snapshot(self) -> dict[str, Any]:
        """The `entitlement` status section and GET /v1/entitlement."""
        e = self.compute()
        c = self.contribution
        return {
            "contribution": {
                "storage_bytes": c.storage_bytes,
                "cpu_millicores": c.cpu_millicores,
                "capacity_bytes": c.capacity_bytes,
                "leased_bytes": c.leased_bytes,
                "audited_bytes": c.audited_bytes,
                "measured_at": self.measured_at,
                "verified_storage_bytes": e.verified_storage_bytes,
                "source": self.source,
            },
            "availability": round(float(e.availability), 6),
            "entitlement": {"storage_bytes": e.storage_bytes, "cpu_millicores": e.cpu_millicores},
            "volume_size_bytes": volume_size(e.storage_bytes),
            "probation": {"active": e.probation, "left_s": round(e.probation_left_s, 1)},
            "ratio": round(float(e.ratio), 6),
            "factor": round(float(e.factor), 6),
            "policy": self.policy_file.as_json(),
        }

    def preview(self, offer: dict[str, int]) -> dict[str, Any]:
        """What the entitlement would be with this offer, without applying it."""
        candidate = replace(self.contribution, **offer)
        e = self.compute(candidate)
        return {"offer": offer, "entitlement": e.as_json(), "current": self.compute().as_json()}

    def set_offer(self, offer: dict[str, int]) -> dict[str, Any]:
        """Apply and keep a new offer (storage bytes and/or CPU millicores)."""
        self.contribution = replace(self.contribution, **offer)
        self.source = "changed"
        self._save_contribution()
        log.info("contribution.changed", **offer)
        return self.snapshot()

    def set_measured(self, measured: dict[str, int | None]) -> dict[str, Any]:
        """The Volume Provider's report (checked by `measured_report`): the capacity it really
        has room for, the bytes leased, and those passing audits (None: not known). Kept only
        when it changes, so a report every few seconds does not rewrite the file."""
        before = self.contribution
        self.contribution = replace(
            before,
            capacity_bytes=measured.get("capacity_bytes"),
            leased_bytes=measured.get("leased_bytes"),
            audited_bytes=measured.get("audited_bytes"),
        )
        self.measured_at = round(self._clock(), 3)
        if self.contribution != before:
            log.info("contribution.measured", **measured)
            self._save_contribution()
        return self.snapshot()

    def _save_contribution(self) -> None:
        c = self.contribution
        doc: dict[str, Any] = {"format": CONTRIBUTION_FORMAT, "source": self.source}
        doc |= {k: getattr(c, k) for k in (*OFFER_KEYS, *MEASURE_KEYS)}
        doc["measured_at"] = self.measured_at
        write_atomic(self._dir / CONTRIBUTION_NAME, json.dumps(doc).encode())


def _load_history(path: Path) -> UptimeHistory:
    data = read_capped(path, MAX_STATE_BYTES)
    if data is None:
        return UptimeHistory()
    try:
        return UptimeHistory.from_json(data)
    except HistoryError as e:
        set_aside(path, str(e))
        return UptimeHistory()


def _load_contribution(
    path: Path, configured: Contribution
) -> tuple[Contribution, str, float | None]:
    data = read_capped(path, MAX_STATE_BYTES)
    if data is None:
        return configured, "config", None
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != CONTRIBUTION_FORMAT:
            raise ContributionError("not a contribution file")
        kept: dict[str, Any] = {k: doc.get(k) for k in (*OFFER_KEYS, *MEASURE_KEYS)}
        source = "changed" if doc.get("source") == "changed" else "config"
        if source == "config":  # only the measurement was kept: the config still gives the offer
            kept |= {k: getattr(configured, k) for k in OFFER_KEYS}
        when = doc.get("measured_at")
        measured_at = (
            float(when)
            if isinstance(when, int | float) and not isinstance(when, bool) and isfinite(when)
            else None
        )
        return Contribution(**kept), source, measured_at
    except (ValueError, TypeError) as e:
        set_aside(path, str(e))
        return configured, "config", None
