"""The signed VPN record the discovery feed carries (DESIGN.md, "Discovery and admission").

A record is ``signature (64 bytes) || payload``. The payload is one canonical msgpack array
(docs/discovery.md lists it field by field); the signature is ed25519 by the record's
`signer` over ``RECORD_CONTEXT || payload``. The signer must be the VPN's founder or one of
the guardians the founder named in the record's delegation, and the VPN id must be the
hash of the founder's key and salt, so a mirror can withhold records but never forge one.

Sans-IO: time is an argument; nothing here touches a socket or a clock.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgpack

from rms.discovery.fields import (
    DELEGATION_CONTEXT,
    KEY_SIZE,
    MAX_GUARDIANS,
    RECORD_CONTEXT,
    RECORD_VERSION,
    SALT_SIZE,
    SIGNATURE_SIZE,
    VPN_ID_CONTEXT,
    RecordReason,
    Reject,
    parse_payload,
    verify_signature,
)
from rms.policy import DEFAULT
from rms.wg.keys import WgPrivateKey, WgPublicKey
from rms.wire.envelope import Signer

__all__ = [
    "DEFAULT_MAX_SKEW_S",
    "MAX_RECORD_BYTES",
    "Charter",
    "Delegation",
    "RecordBody",
    "RecordError",
    "RecordReason",
    "Rejected",
    "VpnRecord",
    "delegate",
    "found",
    "latest",
    "rank",
    "redelegate",
    "sign_record",
    "supersedes",
    "verify_record",
    "vpn_id_of",
]

MAX_RECORD_BYTES = 2048  # a full record (8 guardians, 8 IPv6 addresses) is about 1 KiB
DEFAULT_MAX_SKEW_S = 60.0  # how far a record's issued_at may run ahead of our clock
MAX_DETAIL = 120


class RecordError(Exception):
    """A local error: we tried to build or sign a record that breaks the rules."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that was refused, with the first rule it broke."""

    reason: RecordReason
    detail: str


def vpn_id_of(founder_key: bytes, salt: bytes) -> uuid.UUID:
    """The VPN id a founder key and salt make (docs/management-vpns.md, "Identifiers")."""
    digest = bytearray(hashlib.sha256(VPN_ID_CONTEXT + founder_key + salt).digest()[:16])
    # RFC 9562 section 5.8: version 8 in the high nibble of octet 6, variant 10 in octet 8.
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(digest))


@dataclass(frozen=True, slots=True)
class Delegation:
    """The founder's signed list of guardians who may sign the VPN's records."""

    version: int  # a newer delegation outranks every record carrying an older one
    guardians: tuple[bytes, ...]
    signature: bytes = field(repr=False)

    def allows(self, founder_key: bytes, signer: bytes) -> bool:
        """Whether `signer` may sign records of the VPN founded by `founder_key`."""
        return signer == founder_key or signer in self.guardians


def delegate(
    founder: Signer, vpn_id: uuid.UUID, guardians: Sequence[bytes], version: int
) -> Delegation:
    """The founder's delegation of record signing to `guardians` (at most 8 keys)."""
    keys = tuple(guardians)
    if len(keys) > MAX_GUARDIANS or len(set(keys)) != len(keys):
        raise RecordError(f"a VPN has at most {MAX_GUARDIANS} distinct guardians")
    if any(type(k) is not bytes or len(k) != KEY_SIZE for k in keys):
        raise RecordError(f"a guardian key is {KEY_SIZE} bytes")
    message = msgpack.packb((vpn_id.bytes, version, keys))
    return Delegation(version, keys, founder.sign(DELEGATION_CONTEXT + message))


@dataclass(frozen=True, slots=True)
class Charter:
    """What makes a VPN: its founder, the salt of its id, and who speaks for it."""

    founder_key: bytes
    salt: bytes
    delegation: Delegation

    @property
    def vpn_id(self) -> uuid.UUID:
        """The VPN id, derived from the founder key and the salt."""
        return vpn_id_of(self.founder_key, self.salt)


def found(
    founder: Signer, salt: bytes, guardians: Sequence[bytes] = (), version: int = 1
) -> Charter:
    """A new VPN's charter: `salt` is 16 random bytes (`os.urandom(16)`) from the caller."""
    if type(salt) is not bytes or len(salt) != SALT_SIZE:
        raise RecordError(f"a VPN salt is {SALT_SIZE} bytes")
    vpn_id = vpn_id_of(founder.public_key, salt)
    return Charter(founder.public_key, salt, delegate(founder, vpn_id, guardians, version))


def redelegate(founder: Signer, charter: Charter, guardians: Sequence[bytes]) -> Charter:
    """The charter with a new guardian list, one delegation version up; founder only."""
    if founder.public_key != charter.founder_key:
        raise RecordError("only the VPN's founder can name its guardians")
    version = charter.delegation.version + 1
    return Charter(
        charter.founder_key, charter.salt, delegate(founder, charter.vpn_id, guardians, version)
    )


@dataclass(frozen=True, slots=True)
class RecordBody:
    """What a guardian states about its VPN: where to knock and whether there is room."""

    public_ips: tuple[str, ...]
    guest_port: int
    guest_public_key: WgPublicKey  # the guardian's guest interface
    guest_private_key: WgPrivateKey  # the single guest slot's key: public by design
    soliciting: bool
    members: int
    capacity: int


@dataclass(frozen=True, slots=True)
class VpnRecord:
    """A verified VPN record; `raw` is the exact signed bytes to pass on."""

    vpn_id: uuid.UUID
    founder_key: bytes
    salt: bytes
    delegation: Delegation
    signer: bytes
    public_ips: tuple[str, ...]
    guest_port: int
    guest_public_key: WgPublicKey
    guest_private_key: WgPrivateKey
    soliciting: bool
    members: int
    capacity: int
    seq: int
    issued_at: int  # ms since the epoch
    expires_at: int  # ms since the epoch
    raw: bytes = field(repr=False)

    @property
    def guardians(self) -> tuple[bytes, ...]:
        """The keys the founder allows to sign this VPN's records."""
        return self.delegation.guardians

    @property
    def charter(self) -> Charter:
        """The VPN's charter as this record carries it."""
        return Charter(self.founder_key, self.salt, self.delegation)

    @property
    def body(self) -> RecordBody:
        """The guardian's statement in this record."""
        return RecordBody(
            self.public_ips,
            self.guest_port,
            self.guest_public_key,
            self.guest_private_key,
            self.soliciting,
            self.members,
            self.capacity,
        )


def sign_record(
    signer: Signer,
    charter: Charter,
    body: RecordBody,
    *,
    now: float,
    ttl_s: float = DEFAULT.record_ttl_s,
    seq: int | None = None,
) -> VpnRecord:
    """Sign `body` as a record of `charter`'s VPN at wall-clock `now` (s); seq: now in ms."""
    issued_at = _ms(now)
    times = (issued_at if seq is None else seq, issued_at, issued_at + int(ttl_s * 1000))
    payload = _pack(signer.public_key, charter, body, times)
    result = verify_record(signer.sign(RECORD_CONTEXT + payload) + payload, now)
    if isinstance(result, Rejected):
        raise RecordError(
            f"refusing to sign an invalid record: {result.reason.value}: {result.detail}"
        )
    return result


def _pack(
    signer_key: bytes, charter: Charter, body: RecordBody, times: tuple[int, int, int]
) -> bytes:
    d = charter.delegation
    fields = (
        RECORD_VERSION,
        charter.vpn_id.bytes,
        charter.founder_key,
        charter.salt,
        (d.version, d.guardians, d.signature),
        signer_key,
        body.public_ips,
        body.guest_port,
        body.guest_public_key.raw,
        body.guest_private_key.raw,
        body.soliciting,
        body.members,
        body.capacity,
        *times,  # seq, issued_at, expires_at
    )
    try:
        packed: bytes = msgpack.packb(fields)
    except (ValueError, TypeError, OverflowError) as exc:
        raise RecordError(f"cannot encode the record: {exc}") from None
    return packed


def _ms(now: float) -> int:
    if not math.isfinite(now):
        raise RecordError(f"now must be a finite wall-clock time in seconds, got {now}")
    return int(now * 1000)


def verify_record(
    data: bytes, now: float, *, max_skew_s: float = DEFAULT_MAX_SKEW_S
) -> VpnRecord | Rejected:
    """Check peer bytes as a record at wall-clock `now` (s); never raises on peer input."""
    now_ms = _ms(now)
    try:
        return _verify(bytes(data), now_ms, int(max_skew_s * 1000))
    except Reject as reject:
        return Rejected(reject.reason, reject.detail[:MAX_DETAIL])


def _verify(data: bytes, now_ms: int, skew_ms: int) -> VpnRecord:
    if len(data) > MAX_RECORD_BYTES:
        raise Reject(RecordReason.OVERSIZED, f"{len(data)} bytes, the cap is {MAX_RECORD_BYTES}")
    if len(data) <= SIGNATURE_SIZE:
        raise Reject(RecordReason.MALFORMED, f"{len(data)} bytes, shorter than a signature")
    payload = data[SIGNATURE_SIZE:]
    p = parse_payload(payload)
    if vpn_id_of(p.founder_key, p.salt).bytes != p.vpn_id:
        raise Reject(RecordReason.VPN_ID_MISMATCH, "the VPN id is not the founder's")
    if p.expires_at <= now_ms:
        raise Reject(RecordReason.EXPIRED, f"expired {(now_ms - p.expires_at) / 1000:.1f} s ago")
    if p.issued_at > now_ms + skew_ms:
        raise Reject(RecordReason.FUTURE, f"issued {(p.issued_at - now_ms) / 1000:.1f} s ahead")
    _verify_authority(p.vpn_id, p.founder_key, p.delegation, p.signer)
    if not verify_signature(data[:SIGNATURE_SIZE], RECORD_CONTEXT + payload, p.signer):
        raise Reject(RecordReason.BAD_SIGNATURE, "the record signature does not verify")
    return VpnRecord(
        uuid.UUID(bytes=p.vpn_id),
        p.founder_key,
        p.salt,
        Delegation(*p.delegation),
        p.signer,
        p.public_ips,
        p.guest_port,
        WgPublicKey(p.guest_public_key),
        WgPrivateKey(p.guest_private_key),
        p.soliciting,
        p.members,
        p.capacity,
        p.seq,
        p.issued_at,
        p.expires_at,
        data,
    )


def _verify_authority(
    vpn_id: bytes,
    founder_key: bytes,
    delegation: tuple[int, tuple[bytes, ...], bytes],
    signer: bytes,
) -> None:
    version, guardians, signature = delegation
    message = DELEGATION_CONTEXT + msgpack.packb((vpn_id, version, guardians))
    # Always checked, even when the founder signs: every stored record carries a valid
    # delegation, so no forged guardian list ever sits in a mirror.
    if not verify_signature(signature, message, founder_key):
        raise Reject(RecordReason.BAD_DELEGATION, "the delegation is not the founder's")
    if signer != founder_key and signer not in guardians:
        raise Reject(RecordReason.NOT_GUARDIAN, "the signer is neither founder nor guardian")


def rank(record: VpnRecord) -> tuple[int, int]:
    """The order of a VPN's records: delegation version first, then seq."""
    return (record.delegation.version, record.seq)


def supersedes(new: VpnRecord, kept: VpnRecord | None) -> bool:
    """Whether `new` replaces `kept`: a strictly higher rank; on a tie the kept one stays."""
    if kept is None:
        return True
    if new.vpn_id != kept.vpn_id:
        raise ValueError("records of different VPNs are never compared")
    return rank(new) > rank(kept)


def latest(records: Iterable[VpnRecord]) -> dict[uuid.UUID, VpnRecord]:
    """The winning record of each VPN, by the selection rule, first seen kept on a tie."""
    chosen: dict[uuid.UUID, VpnRecord] = {}
    for record in records:
        if supersedes(record, chosen.get(record.vpn_id)):
            chosen[record.vpn_id] = record
    return chosen
