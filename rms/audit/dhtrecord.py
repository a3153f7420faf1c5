"""Audit reports as DHT records: how they are written, read back and sifted (sans-IO).

Every report about a provider lives under one DHT key, `audit_key(provider)` =
SHA-256(b"audit/" || provider key), as an `audit` record published by the auditor (the DHT
keeps one record per publisher under a multi-publisher key, so an auditor's record about a
provider carries its latest report; docs/accounting.md, "Publication in the DHT"). The
record's fields are the report compacted to fit the DHT's limits (600 bytes, byte strings of
256 at most): the auditor is the record's publisher, the body's other fields and the
report's own signature sit in one array, so the signed report is rebuilt exactly and
verified as the auditor signed it.

`report_of` turns one record read back into a verified report or says why it is dropped;
`AuditInbox` keeps what was already taken, so a record read again is not a new report and
an older one is a replay; `Watchlist` says whose reports this node fetches: its own (so its
owner is warned) and those of the providers it audited lately.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, cast

from rms.audit import report as rep
from rms.dht.records import AUDIT, MAX_RECORD, RecordError, audit_key, parse_record

__all__ = [
    "MAX_AGE_S",
    "MAX_WATCHED",
    "AuditInbox",
    "Dropped",
    "Watchlist",
    "audit_key",
    "record_fields",
    "report_of",
]

MAX_AGE_S = 24 * 3600  # a report older than this is stale: the lease may be long gone
MAX_WATCHED = 64  # providers whose reports one node fetches (its own and its pool's 8)
MAX_REMEMBERED = 65536  # (auditor, provider, lease) rounds kept against replays


class Dropped(Exception):
    """A record read back that is not taken; `reason` is a short counter name."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


def record_fields(report: rep.AuditReport) -> dict[str, object]:
    """The fields of the `audit` record that carries `report` (its auditor publishes it)."""
    sig = bytes.fromhex(str(report.signed["sig"]))
    body = (report.lease, report.round, report.at, report.kind, report.checked, report.failed)
    return {"provider": report.provider, "report": [*body, sig]}


def report_of(
    raw: object, provider: bytes, now: float, max_age_s: float = MAX_AGE_S
) -> rep.AuditReport:
    """The verified report a record read under `audit_key(provider)` carries; Dropped if none."""
    if not isinstance(raw, bytes):
        raise Dropped("invalid", "a record is bytes")
    if len(raw) > MAX_RECORD:
        raise Dropped("oversized", f"a record is at most {MAX_RECORD} bytes")
    try:
        record = parse_record(raw)
    except RecordError as e:
        raise Dropped("invalid", str(e)) from None
    if record.kind != AUDIT:
        raise Dropped("wrong_kind", f"a {record.kind} record under an audit key")
    if record.key != audit_key(provider) or record.fields["provider"] != provider:
        raise Dropped("wrong_key", "the record is about another provider")
    try:
        report = rep.check(_signed(record.publisher, record.fields), now)
    except rep.ReportError as e:
        raise Dropped("forged", str(e)) from None
    if report.at < now - max_age_s:
        raise Dropped("stale", f"the report is older than {max_age_s:g} s")
    return report


def _signed(auditor: bytes, fields: dict[str, object]) -> dict[str, Any]:
    # parse_record checked the shape (rms.dht.records.AUDIT_REPORT)
    compact = cast(tuple[str, int, int, str, int, int, bytes], fields["report"])
    lease, round_, at, kind, checked, failed, sig = compact
    body = {
        "format": rep.FORMAT, "auditor": auditor.hex(),
        "provider": cast(bytes, fields["provider"]).hex(), "lease": lease, "round": round_,
        "at": at, "kind": kind, "checked": checked, "failed": failed,
    }  # fmt: skip
    return {"body": body, "sig": sig.hex()}


class AuditInbox:
    """Reports taken from the DHT: each once, never an older round of the same lease."""

    def __init__(self, own: bytes, max_age_s: float = MAX_AGE_S) -> None:
        self.own = own
        self.max_age_s = max_age_s
        self.dropped: Counter[str] = Counter()
        self.taken = 0
        self._rounds: dict[tuple[bytes, bytes, str], tuple[int, int]] = {}  # -> (round, at)

    def take(self, provider: bytes, raws: Iterable[object], now: float) -> list[rep.AuditReport]:
        """The new reports among the records found under `provider`'s audit key."""
        found = []
        for raw in raws:
            try:
                report = report_of(raw, provider, now, self.max_age_s)
            except Dropped as e:
                self.dropped[e.reason] += 1
                continue
            if report.auditor != self.own and self._new(report, now):
                found.append(report)
        self.taken += len(found)
        return found

    def seen(self, report: rep.AuditReport) -> None:
        """A report this node already holds (its history on start): not new when read back."""
        slot = (report.auditor, report.provider, report.lease)
        if report.round > self._rounds.get(slot, (-1, 0))[0] and len(self._rounds) < MAX_REMEMBERED:
            self._rounds[slot] = (report.round, report.at)

    def _new(self, report: rep.AuditReport, now: float) -> bool:
        slot = (report.auditor, report.provider, report.lease)
        held = self._rounds.get(slot)
        if held is not None and held[0] >= report.round:
            if held[0] > report.round:
                self.dropped["replayed"] += 1  # an older round: a replica behind, or a replay
            return False
        if held is None and len(self._rounds) >= MAX_REMEMBERED:
            self._forget(now)
            if len(self._rounds) >= MAX_REMEMBERED:
                self.dropped["full"] += 1
                return False
        self._rounds[slot] = (report.round, report.at)
        return True

    def _forget(self, now: float) -> None:
        # A stale report is refused anyway, so its round need not be remembered.
        limit = now - self.max_age_s
        for slot in [s for s, (_, at) in self._rounds.items() if at < limit]:
            del self._rounds[slot]

    def status(self) -> dict[str, object]:
        """Figures for the `audits` status section."""
        return {"taken": self.taken, "dropped": dict(sorted(self.dropped.items()))}


class Watchlist:
    """Whose reports this node fetches: itself first, then the providers it audited lately."""

    def __init__(self, own: bytes, max_age_s: float = MAX_AGE_S, limit: int = MAX_WATCHED) -> None:
        self.own = own
        self.max_age_s = max_age_s
        self.limit = limit
        self._audited: dict[bytes, float] = {}  # provider -> when we last audited it

    def audited(self, provider: bytes, at: float) -> None:
        """This node's CFS audited `provider` at `at`."""
        self._audited[provider] = max(at, self._audited.get(provider, at))
        if len(self._audited) > 4 * self.limit:  # keep memory bounded between reads
            newest = sorted(self._audited, key=self._audited.__getitem__)[-self.limit :]
            self._audited = {p: self._audited[p] for p in newest}

    def providers(self, now: float) -> list[bytes]:
        """The providers to fetch, own key first, newest audits next, at most `limit`."""
        fresh = [p for p, at in self._audited.items() if at >= now - self.max_age_s]
        for gone in set(self._audited) - set(fresh):
            del self._audited[gone]
        recent = sorted((p for p in fresh if p != self.own), key=lambda p: -self._audited[p])
        return [self.own, *recent][: self.limit]
