"""Scrub audits of the pool's providers (sans-IO: `now` is an argument, decisions come out).

Issue 6: CFS clients audit their providers from scrub results. Every `every_s` the CFS
scrubs its pool; RAIDZ3 reads every allocated block, checks it against the checksum in its
parent block and names the device that returned wrong data (the CKSUM column of `zpool
status`). A provider that acknowledged writes and dropped them, or lost or altered data,
shows there; one that answers correctly does not. Each round ends with one finding per
provider: `failed` = the checksum errors counted on its device since the round before (a
`zpool clear` in between resets the counters: then the count itself), `checked` = its
share of the pool's allocated data in 128 KiB records (at least 1 and at least `failed`).
READ and WRITE errors are not counted: they are the network or a provider going away,
which the healer handles, not data the provider held wrongly.

A round starts only when every slot is online and no scrub or resilver runs (a scrub
would restart a resilver), and is given up after `max_scrub_s`. `round` is the round's
end in whole seconds, so it grows across restarts of the CFS, as the node's reputation
core needs (a round not newer than the last is a replay there). The finding becomes a report
body (`rms.audit.report`'s format) that the node signs (`POST /v1/audits/sign`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cfs.zfs.status import PoolStatus

__all__ = ["FORMAT", "Finding", "Member", "ScrubRounds", "error_count", "provider_key"]

FORMAT = "truecloud-audit/1"  # rms.audit.report.FORMAT; the node checks the body it signs
RECORD_BYTES = 128 * 1024  # ZFS's default record size: what "checked" counts
MAX_CHECKED = 2**32
WIDTH = 8
RETRY_S = 60.0  # a scrub that could not start is tried again after this
_COUNT = re.compile(r"(\d+(?:\.\d+)?)([KMGTP]?)")


@dataclass(frozen=True, slots=True)
class Member:
    """One online volume of the pool: whose it is, under which lease, as which device."""

    provider: str  # the provider's node id (hex)
    lease: str
    device: str


@dataclass(frozen=True, slots=True)
class Finding:
    """What one scrub round found on one provider's volume."""

    provider: str
    lease: str
    round: int
    checked: int
    failed: int

    def body(self, auditor: bytes, provider_key: bytes) -> dict[str, Any]:
        """The report body the node signs (auditor and provider as node keys)."""
        return {
            "format": FORMAT, "auditor": auditor.hex(), "provider": provider_key.hex(),
            "lease": self.lease, "round": self.round, "at": self.round, "kind": "scrub",
            "checked": self.checked, "failed": self.failed,
        }  # fmt: skip


def provider_key(node_id: str, answer: object) -> bytes | None:
    """The node key in a DHT `node_id` lookup's answer, if it is the key of `node_id`."""
    raw = answer.get("public_key") if isinstance(answer, dict) else None
    if not isinstance(raw, str) or len(raw) != 64:
        return None
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        return None
    return key if hashlib.sha256(key).hexdigest() == node_id else None  # node id = H(key)


def error_count(text: str) -> int | None:
    """A `zpool status` error column (`0`, `12`, `1.50K`) as a number; None if unreadable."""
    found = _COUNT.fullmatch(text.strip())
    if found is None:
        return None
    return int(float(found[1]) * 1024 ** " KMGTP".index(found[2] or " "))


class ScrubRounds:
    """When to scrub, and what each finished scrub says about each provider."""

    def __init__(self, every_s: float, now: float, max_scrub_s: float | None = None) -> None:
        if every_s <= 0:
            raise ValueError("audit rounds need a positive interval")
        self.every_s = every_s
        self.max_scrub_s = max_scrub_s if max_scrub_s is not None else every_s
        self.due = now + every_s
        self.started: float | None = None  # while a scrub of ours runs
        self.rounds = 0
        self._seen: dict[str, int] = {}  # device -> checksum errors at the last round's end

    def step(
        self, status: PoolStatus, members: Sequence[Member], allocated: int, now: float
    ) -> tuple[bool, list[Finding]]:
        """(start a scrub now?, findings of a scrub of ours that has just ended)."""
        scanning = status.scan.in_progress
        if self.started is None:
            ready = now >= self.due and not scanning and len(members) == WIDTH
            if ready:
                self.started = now
                self._seen.update(self._baseline(status, members))
            return ready, []
        if scanning or status.scan.kind != "scrub":
            if now - self.started > self.max_scrub_s:
                self._next(now)  # given up; the next round measures from the same counters
            return False, []
        self._next(now)
        self.rounds += 1
        return False, self._findings(status, members, allocated, int(now))

    def scrub_failed(self, now: float) -> None:
        """`zpool scrub` refused: try again a little later."""
        self.started = None
        self.due = now + RETRY_S

    def next_timer(self) -> float:
        """When `step` next has something to decide (a running scrub: poll as you go)."""
        return self.due

    def _next(self, now: float) -> None:
        self.started = None
        self.due = now + self.every_s

    def _baseline(self, status: PoolStatus, members: Sequence[Member]) -> Mapping[str, int]:
        found = {}
        for m in members:
            if m.device not in self._seen and (count := self._count(status, m.device)) is not None:
                found[m.device] = count
        return found

    def _count(self, status: PoolStatus, device: str) -> int | None:
        leaf = status.device(device)
        return None if leaf is None else error_count(leaf.checksum_errors)

    def _findings(
        self, status: PoolStatus, members: Sequence[Member], allocated: int, at: int
    ) -> list[Finding]:
        share = max(0, allocated) // WIDTH // RECORD_BYTES
        findings = []
        for m in members:
            count = self._count(status, m.device)
            if count is None:
                continue  # the device left the pool meanwhile: no verdict
            before = self._seen.get(m.device, 0)
            failed = min(count - before if count >= before else count, MAX_CHECKED)
            self._seen[m.device] = count
            checked = min(max(1, failed, share), MAX_CHECKED)
            findings.append(Finding(m.provider, m.lease, at, checked, failed))
        current = {m.device for m in members}
        self._seen = {d: c for d, c in self._seen.items() if d in current}
        return findings
