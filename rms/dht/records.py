"""Signed DHT records, libp2p-style: peer, provider and VPN records (docs/dht.md, "Records").

A record is ``signature (64) || payload``; the payload is the msgpack array
``[kind, publisher, seq, expires, fields]`` and the signature is ed25519 by `publisher` over
``RECORD_CONTEXT || payload``. The context differs from the wire envelope's, so a record can
never pass for a wire message or the other way round. Verification covers the bytes as
stored, so replicas never re-encode. `expires` (wall-clock seconds) sits inside the signed
payload: a replica that re-stores a record cannot extend its life.

The DHT key of a record is bound to its publisher or its subject, so no one can store a
record under a key that is not theirs (`record_key`):

- peer:     SHA-256(b"peer/" || publisher)          one record, its publisher's
- provider: SHA-256(b"provide/" || kind)             many records, one per provider
- vpn:      SHA-256(b"vpn/" || vpn_id)                many records, one per guardian
- audit:    SHA-256(b"audit/" || provider)            many records, one per auditor

A provider record is stored only if signed by the provider it names (its publisher); a VPN
record only if its publisher is one of the guardians it lists; an audit record is the
auditor's latest report about the provider it names (never itself), whose own signature
`rms.audit.dhtrecord` checks when it reads the record back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from nacl import bindings
from nacl.exceptions import CryptoError

from rms.dht.types import Address
from rms.wire.envelope import Signer

__all__ = [
    "KINDS",
    "RECORD_CONTEXT",
    "Record",
    "RecordError",
    "Seqs",
    "audit_key",
    "parse_record",
    "peer_key",
    "provider_key",
    "sign_record",
    "vpn_key",
]

RECORD_CONTEXT = b"truecloud-dht-record-v1\x00"
MAX_RECORD = 600  # a store fits 1280 bytes even boxed inside a relay request
PEER, PROVIDER, VPN, AUDIT = "peer", "provider", "vpn", "audit"
KINDS = (PEER, PROVIDER, VPN, AUDIT)
MULTI = frozenset({PROVIDER, VPN, AUDIT})  # kinds with many publishers under one key
AUDIT_REPORT = (str, int, int, str, int, int, bytes)  # lease, round, at, kind, checked, failed, sig
RESOURCES = ("storage", "cpu")
_UNPACK: dict[str, Any] = {
    "raw": False,
    "strict_map_key": True,
    "use_list": False,
    "max_str_len": 256,
    "max_bin_len": 256,
    "max_array_len": 16,
    "max_map_len": 8,
    "max_ext_len": 0,
}


class RecordError(Exception):
    """A record is malformed, forged, or bound to another key; the text says which."""


@dataclass(frozen=True, slots=True)
class Record:
    """A verified record and its exact signed bytes."""

    kind: str
    publisher: bytes
    seq: int
    expires: float
    fields: dict[str, object]
    raw: bytes

    @property
    def key(self) -> bytes:
        """The DHT key this record lives under."""
        return record_key(self.kind, self.publisher, self.fields)

    @property
    def multi(self) -> bool:
        """Whether many publishers share this record's key."""
        return self.kind in MULTI


def peer_key(public_key: bytes) -> bytes:
    """The DHT key of a node's peer record."""
    return hashlib.sha256(b"peer/" + public_key).digest()


def provider_key(resource: str) -> bytes:
    """The DHT key under which providers of `resource` ("storage", "cpu") publish."""
    return hashlib.sha256(b"provide/" + resource.encode()).digest()


def vpn_key(vpn_id: bytes) -> bytes:
    """The DHT key of a management VPN's records."""
    return hashlib.sha256(b"vpn/" + vpn_id).digest()


def audit_key(provider: bytes) -> bytes:
    """The DHT key under which auditors publish their reports about `provider` (its key)."""
    return hashlib.sha256(b"audit/" + provider).digest()


def record_key(kind: str, publisher: bytes, fields: dict[str, object]) -> bytes:
    """The key a record of this kind, publisher and fields is bound to."""
    if kind == PEER:
        return peer_key(publisher)
    if kind == PROVIDER:
        return provider_key(str(fields.get("resource")))
    if kind == AUDIT:
        return audit_key(_bytes(fields.get("provider")))
    return vpn_key(_bytes(fields.get("vpn")))


MAX_SEQ = 2**63 - 1  # seq is a non-negative msgpack int below 2**63


class Seqs:
    """The last seq a publisher signed under each key, so its next one is strictly above.

    A replica refuses a lower or equal seq (no rollback), so a seq taken from a clock that
    stepped back would be refused until the clock caught up: the next seq is the clock in
    milliseconds or the last one + 1, whichever is higher. The daemon keeps these across
    restarts (`rms.dht.seqfile`). At most `capacity` keys; the lowest seq is forgotten first.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self.last: dict[bytes, int] = {}
        self.changes = 0  # bumped on every change, so an adapter knows when to save

    def next(self, key: bytes, now: float) -> int:
        """The seq of our next record under `key` at wall-clock time `now`."""
        return max(int(now * 1000), self.last.get(key, -1) + 1)

    def note(self, key: bytes, seq: int) -> None:
        """We signed (or held before a restart) `seq` under `key`."""
        if type(seq) is not int or not 0 <= seq < MAX_SEQ or seq <= self.last.get(key, -1):
            return
        self.last[key] = seq
        self.changes += 1
        if len(self.last) > self.capacity:
            del self.last[min(self.last, key=self.last.__getitem__)]

    def restore(self, seqs: Mapping[bytes, int]) -> None:
        """Seqs used before a restart; keys that are not 32 bytes are ignored."""
        for key, seq in seqs.items():
            if type(key) is bytes and len(key) == 32:
                self.note(key, seq)


def peer_fields(addresses: Sequence[Address]) -> dict[str, object]:
    """The fields of a peer record: the node's address on each of its VPNs."""
    return {"addrs": [[a.vpn, a.host, a.port] for a in addresses]}


def provider_fields(
    resource: str, amount: int, localities: Sequence[bytes], addresses: Sequence[Address]
) -> dict[str, object]:
    """The fields of a provider record: what, how much, where, how to reach it."""
    return {
        "resource": resource,
        "amount": amount,
        "localities": list(localities),
        "addrs": [[a.vpn, a.host, a.port] for a in addresses],
    }


def vpn_fields(vpn_id: bytes, guardians: Sequence[bytes], members: int) -> dict[str, object]:
    """The fields of a VPN record: its id, guardian keys and member count."""
    return {"vpn": vpn_id, "guardians": list(guardians), "members": members}


def sign_record(
    signer: Signer, kind: str, seq: int, expires: float, fields: dict[str, object]
) -> bytes:
    """Encode and sign a record; raises RecordError if it breaks the rules."""
    payload: bytes = msgpack.packb([kind, signer.public_key, seq, int(expires), fields])
    raw = signer.sign(RECORD_CONTEXT + payload) + payload
    parse_record(raw)  # our own records obey the same rules as a peer's
    return raw


def parse_record(raw: bytes) -> Record:
    """Check a record's form, signature and key binding; raises RecordError."""
    if len(raw) > MAX_RECORD or len(raw) <= 64:
        raise RecordError(f"a record is 65..{MAX_RECORD} bytes, got {len(raw)}")
    try:
        obj = msgpack.unpackb(raw[64:], **_UNPACK)
    except Exception:  # msgpack raises many types on junk; all mean "not a record"
        raise RecordError("not a msgpack record") from None
    kind, publisher, seq, expires, fields = _shape(obj)
    _check_fields(kind, publisher, fields)
    try:
        bindings.crypto_sign_open(raw[:64] + RECORD_CONTEXT + raw[64:], publisher)
    except (CryptoError, ValueError, TypeError):
        raise RecordError("the record's signature does not verify") from None
    return Record(kind, publisher, seq, float(expires), fields, raw)


def _shape(obj: object) -> tuple[str, bytes, int, int, dict[str, object]]:
    if type(obj) is not tuple or len(obj) != 5:
        raise RecordError("a record is an array of 5")
    kind, publisher, seq, expires, fields = obj
    if kind not in KINDS:
        raise RecordError("unknown record kind")
    if type(publisher) is not bytes or len(publisher) != 32:
        raise RecordError("the publisher is not a 32-byte key")
    if type(seq) is not int or not 0 <= seq < 2**63 or type(expires) is not int:
        raise RecordError("seq and expires are non-negative integers")
    if type(fields) is not dict:
        raise RecordError("fields are a map")
    return kind, publisher, seq, expires, fields


def _check_fields(kind: str, publisher: bytes, fields: dict[str, object]) -> None:
    if kind in (PEER, PROVIDER):
        _addresses(fields.get("addrs"))
    if kind == PROVIDER:
        if fields.get("resource") not in RESOURCES:
            raise RecordError("a provider offers storage or cpu")
        amount = fields.get("amount")
        if type(amount) is not int or amount < 0:
            raise RecordError("a provider's amount is a non-negative integer")
        localities = fields.get("localities")
        if type(localities) is not tuple or not all(_is_uuid(u) for u in localities):
            raise RecordError("localities are 16-byte UUIDs")
    if kind == VPN:
        guardians = fields.get("guardians")
        if not _is_uuid(fields.get("vpn")) or type(guardians) is not tuple:
            raise RecordError("a VPN record names its 16-byte id and its guardians")
        if publisher not in guardians:
            raise RecordError("a VPN record is published by one of its guardians")
        if type(fields.get("members")) is not int:
            raise RecordError("a VPN record counts its members")
    if kind == AUDIT:
        _check_audit(publisher, fields)


def _check_audit(publisher: bytes, fields: dict[str, object]) -> None:
    if set(fields) != {"provider", "report"}:
        raise RecordError("an audit record has exactly the fields provider and report")
    provider, report = fields.get("provider"), fields.get("report")
    if type(provider) is not bytes or len(provider) != 32 or provider == publisher:
        raise RecordError("an audit record names a 32-byte provider other than its publisher")
    if type(report) is not tuple or len(report) != len(AUDIT_REPORT):
        raise RecordError("an audit record's report is an array of 7")
    if not all(type(v) is t for v, t in zip(report, AUDIT_REPORT, strict=True)):
        raise RecordError("an audit report is [lease, round, at, kind, checked, failed, sig]")


def _addresses(value: object) -> list[Address]:
    if type(value) is not tuple or not 1 <= len(value) <= 4:
        raise RecordError("a record lists 1 to 4 addresses")
    found = []
    for item in value:
        if type(item) is not tuple or len(item) != 3:
            raise RecordError("an address is [vpn, host, port]")
        vpn, host, port = item
        if not _is_uuid(vpn) or type(host) is not str or type(port) is not int:
            raise RecordError("an address is [16-byte vpn, host, port]")
        found.append(Address(vpn, host, port))
    return found


def record_addresses(record: Record) -> list[Address]:
    """The addresses a peer or provider record lists."""
    return _addresses(record.fields.get("addrs"))


def _is_uuid(value: object) -> bool:
    return type(value) is bytes and len(value) == 16


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else b""
