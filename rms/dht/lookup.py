"""One iterative lookup over d disjoint paths (Kademlia section 2.3, S/Kademlia section 4.4).

Each path keeps its own shortlist of candidates sorted by XOR distance to the target and at
most `alpha` requests in flight. A node is queried by at most one path (the `claimed` set),
so an adversary on one path cannot steer the others: the lookup succeeds if any path
reaches honest nodes holding the value. A path ends when the k closest candidates it knows
have all answered or failed; the lookup ends when every path has, when a value lookup has
collected the copies its requests in flight bring (`rms.dht.ops`), or at the deadline.
This module only decides whom to ask next; the node sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rms.dht.routing import distance
from rms.dht.types import Contact

__all__ = ["Lookup", "Path"]

WAITING, IN_FLIGHT, ANSWERED, FAILED = range(4)


@dataclass(slots=True)
class Path:
    """One of the d disjoint paths of a lookup."""

    candidates: dict[bytes, Contact] = field(default_factory=dict)
    state: dict[bytes, int] = field(default_factory=dict)
    in_flight: int = 0


class Lookup:
    """Whom to ask next for `target`; fed with answers and failures by the node."""

    def __init__(
        self, target: bytes, seeds: list[Contact], paths: int, alpha: int, k: int,
        *, near: int | None = None,
    ) -> None:  # fmt: skip
        self.target = target
        self.alpha = alpha
        self.k = k
        self.near = near  # candidates further than this from the target are "far"
        self.paths = [Path() for _ in range(max(1, min(paths, len(seeds) or 1)))]
        self.claimed: dict[bytes, int] = {}  # node id -> path index
        self.rpcs = 0
        for i, contact in enumerate(sorted(seeds, key=self._dist)):
            self._offer(self.paths[i % len(self.paths)], contact)

    def _dist(self, contact: Contact) -> int:
        return distance(contact.node_id, self.target)

    def _offer(self, path: Path, contact: Contact) -> None:
        if contact.node_id in path.candidates:
            return
        path.candidates[contact.node_id] = contact
        path.state[contact.node_id] = WAITING

    def next_queries(self) -> list[tuple[int, Contact]]:
        """(path index, contact) pairs to query now; marks them in flight."""
        chosen: list[tuple[int, Contact]] = []
        for index, path in enumerate(self.paths):
            for contact in self._ranked(path):
                if path.in_flight >= self._window(contact):
                    break
                if path.state[contact.node_id] != WAITING:
                    continue
                if self.claimed.get(contact.node_id, index) != index:
                    path.state[contact.node_id] = FAILED  # another path owns it: disjoint
                    continue
                self.claimed[contact.node_id] = index
                path.state[contact.node_id] = IN_FLIGHT
                path.in_flight += 1
                self.rpcs += 1
                chosen.append((index, contact))
        return chosen

    def _window(self, contact: Contact) -> int:
        # Far from the target a node cannot hold the value, only point closer; one such
        # request per path at a time does that as well as alpha of them, at a third of the
        # cost. Near the target (about the k closest) we ask alpha at once, as Kademlia does.
        if self.near is not None and self._dist(contact) > self.near:
            return 1
        return self.alpha

    def answered(self, index: int, node_id: bytes, learned: list[Contact]) -> None:
        """Path `index` got an answer from `node_id` naming `learned` contacts."""
        path = self.paths[index]
        self._settle(path, node_id, ANSWERED)
        for contact in learned:
            if contact.node_id not in self.claimed or self.claimed[contact.node_id] == index:
                self._offer(path, contact)

    def failed(self, index: int, node_id: bytes) -> None:
        """A request of path `index` to `node_id` timed out or was refused."""
        self._settle(self.paths[index], node_id, FAILED)

    def _settle(self, path: Path, node_id: bytes, state: int) -> None:
        if path.state.get(node_id) == IN_FLIGHT:
            path.in_flight -= 1
            path.state[node_id] = state

    def _ranked(self, path: Path) -> list[Contact]:
        live = [c for c in path.candidates.values() if path.state[c.node_id] != FAILED]
        return sorted(live, key=self._dist)[: self.k]

    def path_done(self, path: Path) -> bool:
        """Whether the k closest live candidates of this path have all answered."""
        if path.in_flight:
            return False
        return all(path.state[c.node_id] == ANSWERED for c in self._ranked(path))

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered or failed, over all paths."""
        return sum(p.in_flight for p in self.paths)

    @property
    def done(self) -> bool:
        """Whether every path has converged."""
        return all(self.path_done(p) for p in self.paths)

    def closest(self) -> list[Contact]:
        """The k closest nodes that answered, over all paths."""
        answered = [
            c for p in self.paths for c in p.candidates.values()
            if p.state[c.node_id] == ANSWERED
        ]  # fmt: skip
        unique = {c.node_id: c for c in answered}
        return sorted(unique.values(), key=self._dist)[: self.k]
