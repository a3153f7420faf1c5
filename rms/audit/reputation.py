"""Reputation from audit reports: decays, warns before it penalises, lets the owner repair,
and never penalises on one client's word (issue 6; docs/accounting.md).

For each provider the core keeps exponentially decayed weights of passing and failing reports
(half-life `policy.audit_half_life_s`) and each auditor's latest verdict. The score is
(good + 1) / (good + bad + 1): 1.0 for a provider nobody has audited yet.

- A failure is *corroborated* when at least `policy.audit_min_reporters` distinct auditors'
  latest reports about the provider failed. One client, however many reports it sends, is
  never enough: an honest provider cannot be penalised by a single false reporter.
- ok -> warned: failures are corroborated. The owner is warned (an event the daemon shows).
- warned -> ok (repaired): every auditor that had failed it has since passed it, and the
  score is above the threshold (so a provider that loses data now and then cannot flap
  between warned and ok to restart its grace period forever).
- warned -> penalised: still corroborated after `policy.audit_grace_s` and the score is below
  `policy.audit_penalty_score`. A penalty multiplies entitlement and placement weight by
  `policy.audit_penalty_factor`.
- penalised -> ok (restored): no longer corroborated and the score is back above the
  threshold; decay makes sure old failures stop counting.
Reports are taken in any order; a report not newer (by round) than the auditor's latest for
that lease is a replay and is ignored. Sans-IO: `now` is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from rms.audit.report import AuditReport
from rms.policy import Policy

PRIOR = 1.0
MAX_PROVIDERS = 100_000
MAX_AUDITORS_PER_PROVIDER = 256


class Standing(StrEnum):
    """Where a provider stands."""

    OK = "ok"
    WARNED = "warned"
    PENALISED = "penalised"


@dataclass(frozen=True, slots=True)
class StandingChanged:
    """A provider moved from one standing to another (warned, repaired, penalised …)."""

    provider: bytes
    old: Standing
    new: Standing
    reason: str
    at: float


@dataclass(slots=True)
class Record:
    """What the core knows of one provider."""

    good: float = 0.0
    bad: float = 0.0
    updated: float = 0.0
    standing: Standing = Standing.OK
    warned_at: float | None = None
    latest: dict[bytes, bool] = field(default_factory=dict)  # auditor -> passed, latest
    rounds: dict[tuple[bytes, str], int] = field(default_factory=dict)  # replay guard

    def score(self) -> float:
        """(good + 1) / (good + bad + 1), in (0, 1]."""
        return (self.good + PRIOR) / (self.good + self.bad + PRIOR)

    def failing_auditors(self) -> int:
        """Auditors whose latest report failed."""
        return sum(1 for passed in self.latest.values() if not passed)


class Reputation:
    """Every provider's standing, from the reports this node has seen."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.records: dict[bytes, Record] = {}
        self.replays = 0

    def standing(self, provider: bytes) -> Standing:
        """The provider's standing (ok when unknown)."""
        record = self.records.get(provider)
        return record.standing if record else Standing.OK

    def factor(self, provider: bytes) -> float:
        """Entitlement and placement multiplier: the penalty factor while penalised, else 1."""
        if self.standing(provider) is Standing.PENALISED:
            return self.policy.audit_penalty_factor
        return 1.0

    def add(self, report: AuditReport, now: float) -> list[StandingChanged]:
        """Take one verified report; returns the standing changes it caused."""
        record = self._record(report.provider, now)
        if record is None:
            return []
        key = (report.auditor, report.lease)
        if record.rounds.get(key, -1) >= report.round:
            self.replays += 1
            return []
        if report.auditor not in record.latest and len(record.latest) >= MAX_AUDITORS_PER_PROVIDER:
            return []
        record.rounds[key] = report.round
        record.latest[report.auditor] = report.passed
        if report.passed:
            record.good += 1.0
        else:
            record.bad += 1.0
        return self._step(report.provider, record, now)

    def tick(self, now: float) -> list[StandingChanged]:
        """Let time pass: decay, and move providers whose grace period is over."""
        changes: list[StandingChanged] = []
        for provider, record in self.records.items():
            self._decay(record, now)
            changes += self._step(provider, record, now)
        return changes

    def _record(self, provider: bytes, now: float) -> Record | None:
        record = self.records.get(provider)
        if record is None:
            if len(self.records) >= MAX_PROVIDERS:
                return None
            record = self.records[provider] = Record(updated=now)
        self._decay(record, now)
        return record

    def _decay(self, record: Record, now: float) -> None:
        elapsed = now - record.updated
        if elapsed > 0:
            keep = 0.5 ** (elapsed / self.policy.audit_half_life_s)
            record.good *= keep
            record.bad *= keep
            record.updated = now

    def _step(self, provider: bytes, record: Record, now: float) -> list[StandingChanged]:
        corroborated = record.failing_auditors() >= self.policy.audit_min_reporters
        low = record.score() < self.policy.audit_penalty_score
        old = record.standing
        new, reason = old, ""
        if old is Standing.OK and corroborated:
            new, reason = Standing.WARNED, f"{record.failing_auditors()} auditors report failures"
            record.warned_at = now
        elif old is Standing.WARNED and record.failing_auditors() == 0 and not low:
            new, reason = Standing.OK, "repaired: every failing auditor has passed it since"
        elif old is Standing.WARNED and corroborated and low and self._grace_over(record, now):
            new, reason = Standing.PENALISED, "failures persisted past the grace period"
        elif old is Standing.PENALISED and not corroborated and not low:
            new, reason = Standing.OK, "restored: audits pass again"
        if new is old:
            return []
        record.standing = new
        if new is Standing.OK:
            record.warned_at = None
        return [StandingChanged(provider, old, new, reason, now)]

    def _grace_over(self, record: Record, now: float) -> bool:
        return record.warned_at is not None and now - record.warned_at >= self.policy.audit_grace_s

    def summary(self, provider: bytes) -> dict[str, object]:
        """One provider's standing as JSON."""
        record = self.records.get(provider) or Record()
        return {
            "standing": record.standing.value,
            "score": round(record.score(), 4),
            "failing_auditors": record.failing_auditors(),
            "auditors": len(record.latest),
        }
