"""The mirror's core: verify what arrives, merge it, and plan anti-entropy (sans-IO).

Records arrive from guardians (`POST /records`), from peer mirrors (pushes and anti-entropy
pulls) and from the state file; all take the same path through `receive`, because a mirror
trusts no peer and not even its own disk: only signatures make a record. The adapters
(server, replication, service) feed it bytes and the wall-clock time and act on its answers.

Besides single records, mirrors exchange two things. A *bundle* is a msgpack array of signed
record bytes: the body of `GET /records.msgpack` and the content of the state file. A
*digest* is a msgpack array of `[vpn_id (16 bytes), delegation version, seq]` triples: the
body of `GET /digest.msgpack`. Decoding either never raises on peer input: a bad one
decodes to a `SyncError` value, and each record of a bundle is still verified on its own.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from rms.discovery import DEFAULT_MAX_SKEW_S, MAX_RECORD_BYTES, Rejected, VpnRecord, verify_record
from vpn_discovery.store import Outcome, Rank, RecordStore

MAX_INT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class SyncError:
    """A bundle or digest that could not be read."""

    detail: str


def encode_bundle(records: Iterable[VpnRecord]) -> bytes:
    """The bundle of these records' signed bytes."""
    packed: bytes = msgpack.packb([r.raw for r in records])
    return packed


def decode_bundle(data: bytes, max_records: int) -> list[bytes] | SyncError:
    """The signed records in a bundle, still to be verified one by one."""
    obj = _unpack(data, max_records, max_bin=MAX_RECORD_BYTES)
    if isinstance(obj, SyncError):
        return obj
    items = [item for item in obj if type(item) is bytes]
    if len(items) != len(obj):
        return SyncError("a bundle item is not bytes")
    return items


def encode_digest(digest: Mapping[uuid.UUID, Rank]) -> bytes:
    """The digest in its wire form."""
    packed: bytes = msgpack.packb([(k.bytes, v[0], v[1]) for k, v in digest.items()])
    return packed


def decode_digest(data: bytes, max_entries: int) -> dict[uuid.UUID, Rank] | SyncError:
    """A peer's digest: VPN id to (delegation version, seq)."""
    obj = _unpack(data, max_entries, max_bin=16)
    if isinstance(obj, SyncError):
        return obj
    digest: dict[uuid.UUID, Rank] = {}
    for entry in obj:
        parsed = _entry(entry)
        if parsed is None:
            return SyncError("a digest entry is not [16-byte id, version, seq]")
        digest[parsed[0]] = parsed[1]
    return digest


def _entry(entry: object) -> tuple[uuid.UUID, Rank] | None:
    if type(entry) is not tuple or len(entry) != 3:
        return None
    vpn_id, version, seq = entry
    if type(vpn_id) is not bytes or len(vpn_id) != 16:
        return None
    if not all(type(v) is int and 0 <= v <= MAX_INT for v in (version, seq)):
        return None
    return uuid.UUID(bytes=vpn_id), (version, seq)


def _unpack(data: bytes, max_items: int, max_bin: int) -> tuple[object, ...] | SyncError:
    limits: dict[str, Any] = {
        "raw": False,
        "use_list": False,
        "max_bin_len": max_bin,
        "max_str_len": 0,
        "max_array_len": max(max_items, 3),
        "max_map_len": 0,
        "max_ext_len": 0,
    }
    try:
        obj = msgpack.unpackb(data, **limits)
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        return SyncError(f"not msgpack within the caps: {type(exc).__name__}")
    if type(obj) is not tuple:
        return SyncError("not an array")
    if len(obj) > max_items:
        return SyncError(f"{len(obj)} items, the cap is {max_items}")
    return obj


@dataclass(frozen=True, slots=True)
class Received:
    """What became of one record: refused with a reason, or merged with an outcome."""

    outcome: Outcome | Rejected
    record: VpnRecord | None = None

    @property
    def changed(self) -> bool:
        """Whether the store changed, so that peers should be told."""
        return isinstance(self.outcome, Outcome) and self.outcome.changed


@dataclass(frozen=True, slots=True)
class Plan:
    """One anti-entropy exchange with a peer: pull its records? push which of ours?"""

    pull: bool
    push: tuple[VpnRecord, ...]


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What a bundle (state file or a peer's records) gave."""

    changed: tuple[VpnRecord, ...]
    refused: int
    error: str | None = None


class Mirror:
    """A record store behind full verification, with counters for /health."""

    def __init__(self, store: RecordStore, *, max_skew_s: float = DEFAULT_MAX_SKEW_S) -> None:
        self.store = store
        self.max_skew_s = max_skew_s
        self.counts: Counter[str] = Counter()
        self.dirty = False  # changed since the state file was last written

    def receive(self, data: bytes, now: float) -> Received:
        """Verify one record received at wall-clock `now` (s) and merge it."""
        result = verify_record(data, now, max_skew_s=self.max_skew_s)
        if isinstance(result, Rejected):
            self.counts[f"rejected.{result.reason.value}"] += 1
            return Received(result)
        outcome = self.store.offer(result)
        self.counts[outcome.value] += 1
        self.dirty = self.dirty or outcome.changed
        return Received(outcome, result)

    def receive_bundle(self, data: bytes, now: float) -> LoadReport:
        """Verify and merge every record of a bundle (a peer's records, our state file)."""
        items = decode_bundle(data, self.store.limits.max_records)
        if isinstance(items, SyncError):
            self.counts["rejected.bundle"] += 1
            return LoadReport((), 0, items.detail)
        received = [self.receive(item, now) for item in items]
        changed = tuple(r.record for r in received if r.changed and r.record is not None)
        refused = sum(1 for r in received if isinstance(r.outcome, Rejected))
        return LoadReport(changed, refused)

    def expire(self, now: float) -> int:
        """Drop expired records; how many went."""
        gone = self.store.expire(now)
        self.dirty = self.dirty or bool(gone)
        return len(gone)

    def feed(self, n: int, rng: random.Random, now: float) -> list[VpnRecord]:
        """The records for one feed request: a fresh random pick of soliciting VPNs."""
        self.expire(now)
        return self.store.select(n, rng)

    def bundle(self, now: float) -> bytes:
        """Every current record, as a bundle."""
        self.expire(now)
        return encode_bundle(self.store)

    def plan(self, peer_digest: Mapping[uuid.UUID, Rank]) -> Plan:
        """Compare a peer's digest with ours: what to pull and what to push."""
        return Plan(self.store.lacks(peer_digest), tuple(self.store.newer_than(peer_digest)))

    def take_dirty(self) -> bool:
        """Whether the state file needs writing; clears the flag."""
        dirty, self.dirty = self.dirty, False
        return dirty
