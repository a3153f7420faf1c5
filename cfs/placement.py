"""Choosing the providers of a pool's volumes: a pure function over offers (sans-IO).

DESIGN.md, "Storage": *8 providers with distinct geographic and network UUIDs, preferring
reliable ones*. Issue 5 adds distinct /24s (IPv4; /48 for IPv6), so that one site, one
access network or one address block going dark costs at most one volume, which RAIDZ3 (3
parities) survives three times over. The node never places a volume on itself: losing the
node would then cost the pool and its own copy at once.

`place` looks for the most reliable set: candidates are tried in order of reliability
(ties by provider id, so the choice is deterministic), depth first, skipping any that shares
a location, a network or an address block with one already chosen or kept. Greedy choice
alone can paint itself into a corner (an early pick blocks two later ones); the search backs
up, within a bounded number of steps, before it refuses. A refusal says how many fit and why
the others did not.

Offers carry the provider's management (overlay) addresses, not its public one; the CFS
learns public addresses from its own VPNs' WireGuard endpoints. A candidate whose public
address is unknown is placed by its UUIDs alone (its block cannot be compared).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from math import isfinite

POOL_WIDTH = 8
SPARES = 3  # RAIDZ3 outlives 3 lost volumes; each needs a replacement beside the 8
SEARCH_STEPS = 20_000
IPV4_BLOCK, IPV6_BLOCK = 24, 48


class PlacementRefused(Exception):
    """Fewer providers fit than asked for; the message says how many and why."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One provider able to serve a volume: who, where, on which network, how reliable."""

    provider: str  # the provider's node id (hex)
    location: str  # geographic UUID
    network: str  # network-endpoint UUID
    address: IPv4Address | IPv6Address | None  # the provider's public address; None: unknown
    reliability: float = 0.5  # 0..1; audits will feed it, a neutral 0.5 until then
    offer: str = ""  # the offer or request the candidate came from (opaque here)

    @property
    def block(self) -> IPv4Network | IPv6Network | None:
        """The address block the candidate sits in: its /24 (IPv4) or /48 (IPv6), if known."""
        if self.address is None:
            return None
        prefix = IPV4_BLOCK if isinstance(self.address, IPv4Address) else IPV6_BLOCK
        return ip_network(f"{self.address}/{prefix}", strict=False)

    def clashes(self, other: Candidate) -> bool:
        """Whether the two share a provider, a location, a network or an address block."""
        return (
            self.provider == other.provider
            or self.location == other.location
            or self.network == other.network
            or (self.block is not None and self.block == other.block)
        )


def valid(candidate: Candidate) -> bool:
    """Whether a candidate's fields can be placed at all (peer data: checked, not trusted)."""
    score = candidate.reliability
    return (
        bool(candidate.provider and candidate.location and candidate.network)
        and isfinite(score)
        and 0.0 <= score <= 1.0
    )


def place(
    candidates: Iterable[Candidate],
    *,
    count: int = POOL_WIDTH,
    own_id: str,
    keep: Sequence[Candidate] = (),
    avoid: Iterable[str] = (),
) -> tuple[Candidate, ...]:
    """`count` candidates that clash with each other and with `keep` in nothing.

    `keep` are the providers already in the pool (a replacement must differ from the 7
    that remain); `avoid` are provider ids not to use (the one just lost, known-bad ones).
    Raises PlacementRefused naming why when fewer than `count` fit.
    """
    pool, rejected = _eligible(candidates, own_id, keep, set(avoid))
    chosen = _search(pool, count)
    if chosen is None:
        raise PlacementRefused(_reason(count, pool, keep, rejected))
    return chosen


def _eligible(
    candidates: Iterable[Candidate], own_id: str, keep: Sequence[Candidate], avoid: set[str]
) -> tuple[list[Candidate], dict[str, int]]:
    """Sorted candidates that could join at all, and why the others cannot."""
    rejected = {"invalid": 0, "this node": 0, "avoided": 0, "duplicate": 0, "clash with kept": 0}
    seen: set[str] = set()
    pool = []
    for c in candidates:
        why = (
            "invalid"
            if not valid(c)
            else "this node"
            if c.provider == own_id
            else "avoided"
            if c.provider in avoid
            else "duplicate"
            if c.provider in seen
            else "clash with kept"
            if any(c.clashes(k) for k in keep)
            else ""
        )
        if why:
            rejected[why] += 1
            continue
        seen.add(c.provider)
        pool.append(c)
    pool.sort(key=lambda c: (-c.reliability, c.provider))
    return pool, rejected


def _search(pool: list[Candidate], count: int) -> tuple[Candidate, ...] | None:
    """Depth-first, most reliable first; None when no set of `count` exists (or budget ends)."""
    steps = 0
    chosen: list[Candidate] = []

    def extend(start: int) -> bool:
        nonlocal steps
        if len(chosen) == count:
            return True
        for i in range(start, len(pool)):
            if len(pool) - i < count - len(chosen) or steps >= SEARCH_STEPS:
                return False
            steps += 1
            c = pool[i]
            if any(c.clashes(o) for o in chosen):
                continue
            chosen.append(c)
            if extend(i + 1):
                return True
            chosen.pop()
        return False

    return tuple(chosen) if extend(0) else None


def _reason(
    count: int, pool: list[Candidate], keep: Sequence[Candidate], rejected: dict[str, int]
) -> str:
    best = _most_distinct(pool)
    why = ", ".join(f"{n} {k}" for k, n in rejected.items() if n)
    kept = f" beside {len(keep)} kept" if keep else ""
    return (
        f"only {best} of {count} providers fit{kept} (distinct provider, location, network "
        f"and address block needed); {len(pool)} eligible offer(s)"
        + (f", refused: {why}" if why else "")
        + "; nothing was claimed, ask again when more providers answer"
    )


def _most_distinct(pool: list[Candidate]) -> int:
    """How many mutually distinct candidates a greedy pass finds (for the message only)."""
    picked: list[Candidate] = []
    for c in pool:
        if not any(c.clashes(p) for p in picked):
            picked.append(c)
    return len(picked)


def more_vpns(
    reachable: int, unreachable: int, held: int, wanted: int | None, most: int | None
) -> int | None:
    """How many management VPNs to ask the RMS for, or None: ask for nothing.

    Claims and nested links go over a VPN this node shares with the provider (docs/cfs.md,
    "Reach"), so a node that reaches fewer than the pool's 8 and `SPARES` replacements, while
    other providers answered from beyond its VPNs, asks for one VPN more: only once it holds
    what it asked for before (`wanted`) and below the policy's `most`.
    """
    if reachable >= POOL_WIDTH + SPARES or unreachable == 0:
        return None  # enough, or nobody more to reach
    if wanted is None or most is None or held < wanted or held >= most:
        return None  # an RMS without the route, still joining, or at the policy's max
    return held + 1
