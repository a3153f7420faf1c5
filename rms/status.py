"""What the daemon reports about itself: a status board that components add sections to.

The board's snapshot is what `GET /v1/status` returns and `rms status --json` prints. Later
issues add sections (`vpns`, `dht`, `pool`, `entitlement` …) with `add_section`, and health
checks with `add_check`; the node is `running` while every check passes.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1
BASE_FIELDS = frozenset(
    {"schema_version", "node_id", "version", "state", "uptime_s", "started_at", "pid", "problems"}
)

SectionProvider = Callable[[], Any]
HealthCheck = Callable[[], str | None]


class NodeState(StrEnum):
    """The daemon's life cycle as others see it."""

    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    STOPPING = "stopping"


class StatusBoard:
    """Collects the node's status; every value in a snapshot is plain JSON."""

    def __init__(self, node_id: str, version: str, pid: int, started_at: str) -> None:
        self._base = {"node_id": node_id, "version": version, "pid": pid, "started_at": started_at}
        self._state = NodeState.STARTING
        self._sections: dict[str, SectionProvider] = {}
        self._checks: dict[str, HealthCheck] = {}

    def set_state(self, state: NodeState) -> None:
        """Move the life cycle on (starting, running, stopping)."""
        self._state = state

    def add_section(self, name: str, provider: SectionProvider) -> None:
        """Register a top-level section of the status, computed on each snapshot."""
        if name in BASE_FIELDS or name in self._sections:
            raise ValueError(f"status section {name!r} is already taken")
        self._sections[name] = provider

    def add_check(self, name: str, check: HealthCheck) -> None:
        """Register a health check: it returns None when fine, else a one-line problem."""
        self._checks[name] = check

    def problems(self) -> list[str]:
        """Every failing health check, as `name: problem`."""
        found = []
        for name, check in self._checks.items():
            problem = check()
            if problem:
                found.append(f"{name}: {problem}")
        return found

    def snapshot(self, uptime_s: float) -> dict[str, Any]:
        """The whole status as one JSON-able object."""
        problems = self.problems()
        state = self._state
        if state is NodeState.RUNNING and problems:
            state = NodeState.DEGRADED
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **self._base}
        out.update(state=state.value, uptime_s=round(uptime_s, 3), problems=problems)
        for name, provider in self._sections.items():
            out[name] = provider()
        return out
