"""The signed roster document: its bytes, its signature, and verification of peer copies.

A document is ``signature (64 bytes) || payload``, the payload one msgpack array
``[version, signer, body]``, signed by a guardian over ``ROSTER_CONTEXT || payload`` (the
wire envelope's layout, docs/wire.md, with its own context string so neither can pass for
the other). Verification never raises on peer bytes: it returns the `SignedRoster` or a
`RosterProblem` naming the first rule broken (docs/admission.md, "The roster").
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Any

import msgpack
from nacl import bindings
from nacl.exceptions import CryptoError

from rms.membership.roster import MAX_GUARDIANS, MAX_ROSTER_MEMBERS, Member, Roster
from rms.policy import DEFAULT, Policy
from rms.wg.keys import WgPublicKey
from rms.wire.envelope import Signer
from rms.wire.messages.roster import (
    ENDPOINT,
    KEY,
    MAX_ROSTER_BYTES,
    SEQ,
    UUID_FIELD,
    BodyError,
    bytes_field,
    endpoint_of,
    int_field,
    uuid_field,
)
from rms.wire.schema import Bytes, Int, List, Map, SchemaViolation

__all__ = [
    "ROSTER_CONTEXT",
    "ROSTER_VERSION",
    "RosterProblem",
    "RosterReason",
    "SignedRoster",
    "sign_roster",
    "verify_roster",
]

ROSTER_CONTEXT = b"truecloud-roster-v1\x00"
ROSTER_VERSION = 1
SIGNATURE_SIZE = 64
MAX_DETAIL = 120
BODY_DEPTH = 2  # the payload array is depth 1, as in the wire envelope

MEMBER = Map(
    {
        "key": KEY,
        "wg": KEY,
        "address": Bytes(max_len=16, min_len=16),
        "location": UUID_FIELD,
        "network": UUID_FIELD,
        "joined_ms": Int(0, 2**63 - 1),
    },
    optional={"endpoint": ENDPOINT},
)
BODY = Map(
    {
        "vpn_id": UUID_FIELD,
        "seq": SEQ,
        "issued_ms": Int(0, 2**63 - 1),
        "guardians": List(KEY, max_items=MAX_GUARDIANS),
        "members": List(MEMBER, max_items=MAX_ROSTER_MEMBERS),
    }
)
_UNPACK_LIMITS: dict[str, Any] = {
    "raw": False,
    "strict_map_key": True,
    "use_list": False,
    "max_str_len": 1024,
    "max_bin_len": MAX_ROSTER_BYTES,
    "max_array_len": MAX_ROSTER_MEMBERS,
    "max_map_len": 64,
    "max_ext_len": 0,
}


class RosterReason(enum.Enum):
    """Why a roster was not taken."""

    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    UNKNOWN_VERSION = "unknown_version"
    WRONG_VPN = "wrong_vpn"
    UNTRUSTED_SIGNER = "untrusted_signer"
    BAD_SIGNATURE = "bad_signature"
    INVALID = "invalid"  # well signed, but breaks a rule (duplicates, capacity, addresses)
    ROLLBACK = "rollback"  # older than the version we hold
    CONFLICT_LOST = "conflict_lost"  # same seq as ours, loses the tie-break


@dataclass(frozen=True, slots=True)
class RosterProblem:
    """A roster that was refused; `detail` is short and safe to log."""

    reason: RosterReason
    detail: str


@dataclass(frozen=True, slots=True)
class SignedRoster:
    """A verified roster version and the exact signed bytes to pass on."""

    roster: Roster
    signer: bytes
    data: bytes = field(repr=False)

    @property
    def seq(self) -> int:
        """The version's sequence number."""
        return self.roster.seq

    @property
    def digest(self) -> bytes:
        """SHA-256 of the signed bytes: tells two versions with one seq apart."""
        return hashlib.sha256(self.data).digest()


class _Refuse(Exception):  # internal control flow, always caught in verify_roster()
    def __init__(self, reason: RosterReason, detail: str) -> None:
        super().__init__(detail)
        self.problem = RosterProblem(reason, detail[:MAX_DETAIL])


def sign_roster(signer: Signer, roster: Roster, policy: Policy = DEFAULT) -> SignedRoster:
    """Sign `roster` as a guardian; an invalid roster or a non-guardian signer is our bug."""
    problem = roster.problem(policy)
    if problem is not None:
        raise ValueError(f"refusing to sign an invalid roster: {problem}")
    if signer.public_key not in roster.guardians:
        raise ValueError("only a guardian listed in the roster may sign it")
    payload: bytes = msgpack.packb((ROSTER_VERSION, signer.public_key, _body(roster)))
    data = signer.sign(ROSTER_CONTEXT + payload) + payload
    if len(data) > MAX_ROSTER_BYTES:
        raise ValueError(f"a roster of {len(data)} bytes exceeds {MAX_ROSTER_BYTES}")
    return SignedRoster(roster, signer.public_key, data)


def _body(roster: Roster) -> dict[str, object]:
    return {
        "vpn_id": roster.vpn_id.bytes,
        "seq": roster.seq,
        "issued_ms": roster.issued_ms,
        "guardians": list(roster.guardians),
        "members": [_member_body(m) for m in roster.members],
    }


def _member_body(m: Member) -> dict[str, object]:
    body: dict[str, object] = {
        "key": m.node_key,
        "wg": m.wg_public_key.raw,
        "address": m.address.packed,
        "location": m.location.bytes,
        "network": m.network.bytes,
        "joined_ms": m.joined_ms,
    }
    if m.endpoint is not None:
        body["endpoint"] = m.endpoint.body()
    return body


def verify_roster(
    data: bytes,
    *,
    vpn_id: uuid.UUID,
    trusted_guardians: Collection[bytes],
    policy: Policy = DEFAULT,
) -> SignedRoster | RosterProblem:
    """Check peer bytes as a roster of `vpn_id` signed by a trusted guardian; never raises."""
    try:
        return _verify(bytes(data), vpn_id, trusted_guardians, policy)
    except _Refuse as refuse:
        return refuse.problem


def _verify(
    data: bytes, vpn_id: uuid.UUID, trusted: Collection[bytes], policy: Policy
) -> SignedRoster:
    if len(data) > MAX_ROSTER_BYTES:
        raise _Refuse(RosterReason.OVERSIZED, f"{len(data)} bytes, the cap is {MAX_ROSTER_BYTES}")
    if len(data) <= SIGNATURE_SIZE:
        raise _Refuse(RosterReason.MALFORMED, f"{len(data)} bytes, shorter than a signature")
    payload = data[SIGNATURE_SIZE:]
    signer, body = _envelope(_unpack(payload))
    if signer not in trusted:
        raise _Refuse(RosterReason.UNTRUSTED_SIGNER, f"signed by {signer.hex()[:16]}…")
    roster = _roster(body)
    if roster.vpn_id != vpn_id:
        raise _Refuse(RosterReason.WRONG_VPN, f"a roster of VPN {roster.vpn_id}")
    _check_signature(data[:SIGNATURE_SIZE], payload, signer)
    _check_rules(roster, signer, policy)
    return SignedRoster(roster, signer, data)


def _unpack(payload: bytes) -> object:
    try:
        return msgpack.unpackb(payload, **_UNPACK_LIMITS)
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        oversized = "exceeds max_" in str(exc) or isinstance(exc, msgpack.exceptions.StackError)
        reason = RosterReason.OVERSIZED if oversized else RosterReason.MALFORMED
        raise _Refuse(reason, f"not a roster payload: {type(exc).__name__}") from None


def _envelope(obj: object) -> tuple[bytes, Mapping[str, object]]:
    if type(obj) is not tuple or not obj or type(obj[0]) is not int:
        raise _Refuse(RosterReason.MALFORMED, "the payload is not a roster array")
    if obj[0] != ROSTER_VERSION:
        raise _Refuse(RosterReason.UNKNOWN_VERSION, f"version {obj[0]}, we read {ROSTER_VERSION}")
    if len(obj) != 3 or type(obj[1]) is not bytes or len(obj[1]) != 32:
        raise _Refuse(RosterReason.MALFORMED, "not [version, signer key, body]")
    try:
        body = BODY.conform_map(obj[2], BODY_DEPTH, False)
    except SchemaViolation as exc:
        raise _Refuse(RosterReason.MALFORMED, str(exc)) from None
    return obj[1], body


def _roster(body: Mapping[str, object]) -> Roster:
    guardians = body.get("guardians")
    members = body.get("members")
    if not isinstance(guardians, tuple) or not isinstance(members, tuple):
        raise _Refuse(RosterReason.MALFORMED, "guardians or members are not lists")
    try:
        parsed = tuple(_member(m) for m in members)
    except BodyError as exc:
        raise _Refuse(RosterReason.MALFORMED, str(exc)) from None
    return Roster(
        uuid_field(body, "vpn_id"),
        int_field(body, "seq"),
        int_field(body, "issued_ms"),
        tuple(g for g in guardians if isinstance(g, bytes)),
        parsed,
    )


def _member(value: object) -> Member:
    if not isinstance(value, Mapping):
        raise BodyError("a member is not a map")
    raw_endpoint = value.get("endpoint")
    return Member(
        bytes_field(value, "key"),
        WgPublicKey(bytes_field(value, "wg")),
        IPv6Address(bytes_field(value, "address")),
        uuid_field(value, "location"),
        uuid_field(value, "network"),
        int_field(value, "joined_ms"),
        None if raw_endpoint is None else endpoint_of(raw_endpoint),
    )


def _check_signature(signature: bytes, payload: bytes, signer: bytes) -> None:
    try:
        bindings.crypto_sign_open(signature + ROSTER_CONTEXT + payload, signer)
    except (CryptoError, ValueError, TypeError):
        raise _Refuse(RosterReason.BAD_SIGNATURE, "the signature does not verify") from None


def _check_rules(roster: Roster, signer: bytes, policy: Policy) -> None:
    if signer not in roster.guardians:
        raise _Refuse(RosterReason.INVALID, "the signer is not a guardian the roster lists")
    problem = roster.problem(policy)
    if problem is not None:
        raise _Refuse(RosterReason.INVALID, problem)
