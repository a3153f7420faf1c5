"""The lab's bookkeeping: a JSON record of nodes, addresses and pids, and the lab lock.

The record is a convenience for `status` and `exec`; teardown never depends on it (it finds
namespaces by name and processes by namespace). It is written atomically after each step of
`up`, with phase "building" until every node reports running and "up" after.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from rms.lab.system import LabError

BUILDING = "building"
UP = "up"
# Phases only `rms lab status` reports: nothing there, or a half-built lab nobody is building.
ABSENT = "absent"
STALE = "stale"


@dataclass(frozen=True)
class NodeRecord:
    """One node as built: where it lives and the pids of its programs."""

    name: str
    netns: str
    address: str
    address6: str
    pids: dict[str, int] = field(default_factory=dict)
    kind: str = "node"  # "node" or "mirror"


@dataclass(frozen=True)
class LabRecord:
    """The whole lab as built so far."""

    lab: str
    phase: str
    nodes: tuple[NodeRecord, ...] = ()
    created: float = 0.0
    locations: int = 4  # how nodes are spread (rms.lab.cloud.Diversity), for `lab add`
    networks: int = 6

    def with_node(self, node: NodeRecord) -> LabRecord:
        """This record with node added or replaced."""
        kept = tuple(n for n in self.nodes if n.name != node.name)
        return replace(self, nodes=(*kept, node))

    def node(self, name: str) -> NodeRecord | None:
        """The node of that name, if the lab has it."""
        return next((n for n in self.nodes if n.name == name), None)

    def to_json(self) -> str:
        """The record as JSON text."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LabRecord:
        """Parse a record; LabError if it is not one."""
        try:
            raw: dict[str, Any] = json.loads(text)
            nodes = tuple(NodeRecord(**n) for n in raw["nodes"])
            spread = (int(raw.get("locations", 4)), int(raw.get("networks", 6)))
            return cls(str(raw["lab"]), str(raw["phase"]), nodes, float(raw["created"]), *spread)
        except (ValueError, KeyError, TypeError) as e:
            raise LabError(f"the lab's state file is damaged ({e}); run `rms lab down`") from e


def save(path: Path, record: LabRecord) -> None:
    """Write the record atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(record.to_json())
    tmp.replace(path)


def load(path: Path) -> LabRecord | None:
    """The record, or None when there is none."""
    try:
        return LabRecord.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except OSError as e:
        raise LabError(f"cannot read {path}: {e.strerror}") from e


def lock_held(path: Path) -> bool:
    """Whether some live `up` or `down` holds the lab's lock right now."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class LabLock:
    """An exclusive flock on the lab's lock file, held while `up` or `down` changes the lab.

    The kernel drops the lock when its holder dies, so a killed `up` never blocks the next one.
    """

    def __init__(self, path: Path, lab: str) -> None:
        self._path, self._lab = path, lab
        self._fd: int | None = None

    def __enter__(self) -> Self:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        while self._fd is None:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LabError(
                    f"another `rms lab up` or `rms lab down` is working on lab {self._lab}; "
                    "wait for it to finish"
                ) from None
            # A `down` may have removed the file while we waited: lock the file that is there.
            if self._same_file(fd):
                self._fd = fd
            else:
                os.close(fd)
        return self

    def _same_file(self, fd: int) -> bool:
        try:
            return self._path.stat().st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def remove(self) -> None:
        """Delete the lock file while still holding it (the lab is gone)."""
        self._path.unlink(missing_ok=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
