"""The entitlement service's state on disk: capped reads, atomic writes, and the policy file.

Every state file of the entitlement, ledger and audit services is read with a size cap (a
damaged or planted file cannot make the daemon read gigabytes) and written through a temporary
file, fsync and rename, so a crash leaves either the old content or the new, never half.

Which policy this node applies: the signed document it accepted last, else the defaults. An
update (the component library's TUF client, or an operator) drops a new document at
`[policy] document` (default `<state_dir>/policy.json`). The node checks it against its
configured policy keys and the version it accepted before; an accepted document is copied to
`<state_dir>/policy.accepted.json`, so a later rollback to an older file is refused even after
a restart. A refused document changes nothing and is reported as a problem of the node.
The daemon (rms.daemon) owns the node's PolicyFile and runs every service with the policy
it chose at start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from rms import policydoc
from rms.config import Config
from rms.policy import DEFAULT, Policy
from rms.policydoc import PolicyTrust

ACCEPTED_NAME = "policy.accepted.json"
log = structlog.get_logger("rms.state")


@dataclass(frozen=True, slots=True)
class PolicyState:
    """A policy, the document it came from (version None: the built-in defaults), and what
    the node thinks of the files."""

    policy: Policy
    version: int | None  # None: the built-in defaults
    signers: tuple[str, ...]
    problem: str | None
    expires_at: str | None = None

    def as_json(self) -> dict[str, object]:
        """For the status section and GET /v1/policy."""
        source = "built-in defaults" if self.version is None else "signed document"
        return {
            "version": self.version,
            "source": source,
            "signers": list(self.signers),
            "expires_at": self.expires_at,
            "problem": self.problem,
        }


class PolicyFile:
    """Loads, verifies and keeps the node's policy document (the decision is
    `rms.policydoc.choose`; this reads and writes the files).

    `start()` fixes the policy the daemon runs with (`policy`); later `refresh()` calls still
    verify and keep newer documents, so a rollback is refused from then on, and report that a
    restart applies them (`problem`)."""

    def __init__(
        self,
        state_dir: Path,
        candidate: Path,
        trust: PolicyTrust | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._accepted_path = state_dir / ACCEPTED_NAME
        self._candidate = candidate
        self._trust = trust
        self._clock = clock
        self.state = PolicyState(DEFAULT, None, (), None)
        self.running: PolicyState | None = None  # fixed by start()

    @classmethod
    def from_config(cls, config: Config, clock: Callable[[], float] = time.time) -> PolicyFile:
        """The node's PolicyFile from `[policy]` (keys, threshold, document)."""
        section = config.policy
        trust = PolicyTrust.from_hex(section.keys, section.threshold) if section.keys else None
        state_dir = config.node.state_dir
        candidate = Path(section.document) if section.document else state_dir / "policy.json"
        return cls(state_dir, candidate, trust, clock)

    def start(self) -> Policy:
        """Choose the policy the daemon runs with (once); returns it."""
        if self.running is None:
            self.running = self.refresh()
            log.info("policy.in_force", **self.running.as_json())
        return self.running.policy

    @property
    def policy(self) -> Policy:
        """The policy in force: the one the daemon started with."""
        return self.start() if self.running is None else self.running.policy

    def refresh(self) -> PolicyState:
        """Read both files again and decide; returns the newest good state. Cheap enough
        for every heartbeat (two files of at most 64 KiB), and it notices expiry."""
        kept = read_capped(self._accepted_path, policydoc.MAX_DOCUMENT_BYTES)
        candidate = read_capped(self._candidate, policydoc.MAX_DOCUMENT_BYTES)
        now = self._clock()
        choice = policydoc.choose(self._trust, kept, candidate, now, str(self._candidate))
        problem = choice.problem
        if choice.keep is not None:
            try:
                write_atomic(self._accepted_path, choice.keep)
                log.info("policy.accepted", version=choice.document and choice.document.version)
            except OSError as e:
                problem = f"cannot keep the accepted policy in {self._accepted_path}: {e.strerror}"
        if problem is not None and problem != self.state.problem:
            log.warning("policy.problem", problem=problem)
        self.state = _state(choice.document, problem)
        return self.state

    def problem(self) -> str | None:
        """The health check: a refused document, an expired one, or one awaiting a restart."""
        if self.state.problem is not None:
            return self.state.problem
        running = self.running
        if running is not None and running.version != self.state.version:
            was = running.version or "the built-in defaults"
            now = self.state.version or "the built-in defaults"
            return f"policy version {now} accepted while running {was}: restart rms to apply it"
        return None

    def as_json(self) -> dict[str, object]:
        """The policy in force for the status, with the newest accepted version."""
        running = self.running or self.state
        return {**running.as_json(), "accepted": self.state.version, "problem": self.problem()}


def _state(doc: policydoc.PolicyDocument | None, problem: str | None) -> PolicyState:
    if doc is None:
        return PolicyState(DEFAULT, None, (), problem)
    signers = tuple(sorted(k.hex() for k in doc.signers))
    return PolicyState(doc.policy, doc.version, signers, problem, doc.expires_at)


def read_capped(path: Path, limit: int) -> bytes | None:
    """At most `limit + 1` bytes of the file (so callers can tell it is too large); None if
    it does not exist or cannot be read."""
    try:
        with path.open("rb") as f:
            return f.read(limit + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("state_file.unreadable", path=str(path), error=e.strerror)
        return None


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace the file's content with `data` in one step."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    temp.replace(path)


def set_aside(path: Path, reason: str) -> None:
    """Move a damaged file to NAME.damaged (kept for the owner to look at) and log why."""
    log.warning("state_file.damaged", path=str(path), reason=reason[:200])
    try:
        path.replace(path.with_name(path.name + ".damaged"))
    except OSError as e:
        log.warning("state_file.set_aside_failed", path=str(path), error=e.strerror)
