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
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from rms import policydoc
from rms.policy import DEFAULT, Policy
from rms.policydoc import PolicyDocError, PolicyTrust

ACCEPTED_NAME = "policy.accepted.json"
log = structlog.get_logger("rms.state")


@dataclass(frozen=True, slots=True)
class PolicyState:
    """The policy in force and what the node thinks of the candidate file."""

    policy: Policy
    version: int | None  # None: the built-in defaults
    signers: tuple[str, ...]
    problem: str | None

    def as_json(self) -> dict[str, object]:
        """For the status section and GET /v1/policy."""
        source = "built-in defaults" if self.version is None else "signed document"
        return {
            "version": self.version,
            "source": source,
            "signers": list(self.signers),
            "problem": self.problem,
        }


class PolicyFile:
    """Loads, verifies and keeps the node's policy document."""

    def __init__(self, state_dir: Path, candidate: Path, trust: PolicyTrust | None) -> None:
        self._accepted_path = state_dir / ACCEPTED_NAME
        self._candidate = candidate
        self._trust = trust
        self._seen: tuple[int, int] | None = None
        self.state = PolicyState(DEFAULT, None, (), None)

    def refresh(self) -> PolicyState:
        """Re-read the candidate when it changed; returns the state in force."""
        stamp = _stamp(self._candidate)
        if self._seen is not None and stamp == self._seen:
            return self.state
        self._seen = stamp
        accepted = self._load_accepted()
        problem = self._consider(accepted) if stamp is not None else None
        current = self._load_accepted()
        self.state = _state(current, problem)
        return self.state

    def _load_accepted(self) -> policydoc.PolicyDocument | None:
        if self._trust is None:
            return None
        data = read_capped(self._accepted_path, policydoc.MAX_DOCUMENT_BYTES)
        if data is None:
            return None
        try:
            return policydoc.check(data, self._trust)
        except PolicyDocError as e:
            log.warning("policy.accepted_refused", path=str(self._accepted_path), reason=str(e))
            return None

    def _consider(self, accepted: policydoc.PolicyDocument | None) -> str | None:
        data = read_capped(self._candidate, policydoc.MAX_DOCUMENT_BYTES)
        if data is None:
            return f"cannot read {self._candidate}"
        if self._trust is None:
            return f"{self._candidate} ignored: no trusted policy keys in [policy] keys"
        floor = accepted.version if accepted else 0
        try:
            doc = policydoc.check(data, self._trust, min_version=floor)
        except PolicyDocError as e:
            log.warning("policy.refused", path=str(self._candidate), reason=str(e))
            return f"{self._candidate} refused: {e}; keeping the policy in force"
        if accepted is None or doc.version > accepted.version:
            write_atomic(self._accepted_path, data)
            log.info("policy.accepted", version=doc.version)
        return None


def _state(doc: policydoc.PolicyDocument | None, problem: str | None) -> PolicyState:
    if doc is None:
        return PolicyState(DEFAULT, None, (), problem)
    signers = tuple(sorted(k.hex() for k in doc.signers))
    return PolicyState(doc.policy, doc.version, signers, problem)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


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
