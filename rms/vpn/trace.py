"""What one join cost: from the first feed fetch to the first handshake on the new VPN.

Times are wall-clock (WireGuard reports handshakes in UNIX time). Guest-link bytes are what
the admission exchange put on the wire, WireGuard overhead included, over every attempt
the join needed; feed bytes are the feeds read on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KEEP = 16  # joins remembered for `rms status`


@dataclass
class JoinTrace:
    """One join in progress or done (mutable: filled in as the join goes)."""

    started: float
    attempts: int = 0
    guest_bytes: int = 0
    vpn_id: str | None = None
    admitted_at: float | None = None
    first_handshake_at: float | None = None
    outcomes: list[str] = field(default_factory=list)

    def attempted(self, vpn_id: str, outcome: str, guest_bytes: int) -> None:
        """Count one admission exchange and what it cost."""
        self.attempts += 1
        self.guest_bytes += guest_bytes
        self.outcomes = [*self.outcomes[-(KEEP - 1) :], f"{vpn_id[:8]}: {outcome}"]

    def handshake_seen(self, last_handshakes: list[float]) -> None:
        """Note the first handshake on the VPN once a peer reports one after admission."""
        if self.admitted_at is None or self.first_handshake_at is not None:
            return
        after = [t for t in last_handshakes if t >= self.admitted_at - 1.0]
        if after:
            self.first_handshake_at = min(after)

    def as_json(self) -> dict[str, Any]:
        """The join as `rms status --json` shows it."""
        done = self.first_handshake_at
        return {
            "vpn": self.vpn_id,
            "attempts": self.attempts,
            "guest_bytes": self.guest_bytes,
            "admitted_s": _since(self.started, self.admitted_at),
            "first_handshake_s": _since(self.started, done),
            "outcomes": list(self.outcomes),
        }


def _since(start: float, end: float | None) -> float | None:
    return None if end is None else round(end - start, 3)
