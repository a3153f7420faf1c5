"""Availability from an uptime history: the share of a window in which the node was up.

The daemon records a heartbeat every `policy.uptime_heartbeat_s`; two heartbeats closer than
`policy.uptime_gap_s` mean the node was up in between, a longer silence is downtime. The
history keeps merged intervals rather than every heartbeat (30 days of minute heartbeats are
43,200 samples; a node that never stops has one interval), and forgets what falls out of the
window. Sans-IO: the adapter reads and writes the file, this module only computes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise
from math import isfinite

from rms.policy import Policy

MAX_INTERVALS = 4096  # a node restarting more often than this per window is down anyway
MAX_HISTORY_BYTES = 256 * 1024
HISTORY_FORMAT = "truecloud-uptime/1"


class HistoryError(ValueError):
    """An uptime history file that cannot be read back."""


@dataclass(slots=True)
class UptimeHistory:
    """Merged [start, end] intervals in which the node was up, oldest first."""

    first_seen: float | None = None
    intervals: list[tuple[float, float]] = field(default_factory=list)

    def beat(self, now: float, policy: Policy) -> None:
        """Record that the node is up at `now`; extends the last interval or opens a new one."""
        if not isfinite(now):
            return
        if self.first_seen is None:
            self.first_seen = now
        if self.intervals:
            start, end = self.intervals[-1]
            if now < end:
                return  # the clock went back: keep what we had rather than rewrite history
            if now - end <= policy.uptime_gap_s:
                self.intervals[-1] = (start, now)
                self.prune(now, policy)
                return
        self.intervals.append((now, now))
        self.prune(now, policy)

    def prune(self, now: float, policy: Policy) -> None:
        """Forget intervals that ended before the window, and the oldest beyond the cap."""
        horizon = now - policy.availability_window_s
        self.intervals = [(s, e) for s, e in self.intervals if e >= horizon][-MAX_INTERVALS:]

    def availability(self, now: float, policy: Policy) -> Fraction:
        """Up time / observed time over the window, exactly; 1 before anything is observed.

        The window starts at the later of `now - window` and the first heartbeat: a node is
        not counted down for the time before it existed (probation covers newcomers). The
        silence since the last heartbeat counts as up while it is shorter than the gap limit.
        """
        if self.first_seen is None or not isfinite(now):
            return Fraction(1)
        start = max(now - policy.availability_window_s, self.first_seen)
        span = now - start
        if span <= 0:
            return Fraction(1)
        intervals = list(self.intervals)
        if intervals and 0 <= now - intervals[-1][1] <= policy.uptime_gap_s:
            intervals[-1] = (intervals[-1][0], now)
        up = sum(max(0.0, min(e, now) - max(s, start)) for s, e in intervals)
        return min(Fraction(1), Fraction(up) / Fraction(span))

    def to_json(self) -> bytes:
        """The history file's content."""
        doc = {"format": HISTORY_FORMAT, "first_seen": self.first_seen, "up": self.intervals}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> UptimeHistory:
        """Parse a history file; HistoryError when it is malformed, oversized or inconsistent."""
        if len(data) > MAX_HISTORY_BYTES:
            raise HistoryError("uptime history is larger than 256 KiB")
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise HistoryError("uptime history is not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != HISTORY_FORMAT:
            raise HistoryError(f"uptime history is not {HISTORY_FORMAT}")
        first = doc.get("first_seen")
        raw = doc.get("up")
        if first is not None and not _time(first):
            raise HistoryError("uptime history: first_seen is not a time")
        if not isinstance(raw, list) or len(raw) > MAX_INTERVALS:
            raise HistoryError("uptime history: 'up' is not a list of intervals")
        intervals = [_interval(item) for item in raw]
        _check_order(intervals, first)
        return cls(first_seen=first, intervals=intervals)


def _time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and isfinite(value)


def _interval(item: object) -> tuple[float, float]:
    if not isinstance(item, list) or len(item) != 2 or not all(_time(v) for v in item):
        raise HistoryError("uptime history: an interval is not [start, end]")
    start, end = float(item[0]), float(item[1])
    if end < start:
        raise HistoryError("uptime history: an interval ends before it starts")
    return start, end


def _check_order(intervals: list[tuple[float, float]], first: object) -> None:
    if intervals and first is None:
        raise HistoryError("uptime history has intervals but no first_seen")
    for (_, end), (start, _) in pairwise(intervals):
        if start < end:
            raise HistoryError("uptime history: intervals overlap or are out of order")
    if intervals and isinstance(first, int | float) and intervals[0][0] < first:
        raise HistoryError("uptime history: an interval starts before first_seen")
