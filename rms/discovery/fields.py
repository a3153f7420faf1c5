"""The VPN record's payload layout and the checks on each field (docs/discovery.md).

`parse_payload` turns peer bytes into plain values or raises `Reject` with the first rule
they break; record.py adds the identity, time and signature checks. Sans-IO.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Any, NamedTuple

import msgpack
from nacl import bindings
from nacl.exceptions import CryptoError

RECORD_VERSION = 1
# Domain separation: no other signed object of the project (wire envelope, DHT record,
# roster) can ever be passed off as a record, a delegation, or the other way round.
RECORD_CONTEXT = b"truecloud-vpn-record-v1\x00"
DELEGATION_CONTEXT = b"truecloud-vpn-guardians-v1\x00"
VPN_ID_CONTEXT = b"truecloud-vpn-v1\x00"
SIGNATURE_SIZE = 64
KEY_SIZE = 32
SALT_SIZE = 16
UUID_SIZE = 16
FIELD_COUNT = 16
MAX_GUARDIANS = 8
MAX_PUBLIC_IPS = 8
MAX_CAPACITY = 1024
MAX_INT = 2**63 - 1
MAX_LIFETIME_MS = 24 * 3600 * 1000  # a record must be republished at least daily
MAX_IP_TEXT = 45  # the longest textual IPv6 address

_UNPACK_LIMITS: dict[str, Any] = {
    "raw": False,
    "strict_map_key": True,
    "use_list": False,
    "max_str_len": 256,
    "max_bin_len": 256,
    "max_array_len": 32,
    "max_map_len": 0,  # a record has no maps
    "max_ext_len": 0,
}


class RecordReason(enum.Enum):
    """Why a record was refused; checks run cheapest first."""

    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    NON_CANONICAL = "non_canonical"
    UNKNOWN_VERSION = "unknown_version"
    BAD_FIELD = "bad_field"
    VPN_ID_MISMATCH = "vpn_id_mismatch"
    EXPIRED = "expired"
    FUTURE = "future"
    BAD_DELEGATION = "bad_delegation"
    NOT_GUARDIAN = "not_guardian"
    BAD_SIGNATURE = "bad_signature"


class Reject(Exception):
    """Internal control flow of verification, always caught by verify_record."""

    def __init__(self, reason: RecordReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Payload(NamedTuple):
    """The payload's values, each checked for type, size and range."""

    vpn_id: bytes
    founder_key: bytes
    salt: bytes
    delegation: tuple[int, tuple[bytes, ...], bytes]
    signer: bytes
    public_ips: tuple[str, ...]
    guest_port: int
    guest_public_key: bytes
    guest_private_key: bytes
    soliciting: bool
    members: int
    capacity: int
    seq: int
    issued_at: int
    expires_at: int


def verify_signature(signature: bytes, message: bytes, public_key: bytes) -> bool:
    """Whether `signature` is `public_key`'s ed25519 signature of `message`."""
    try:
        bindings.crypto_sign_open(signature + message, public_key)
    except (CryptoError, ValueError, TypeError):
        return False
    return True


def parse_payload(payload: bytes) -> Payload:
    """The checked values of a record payload; raises Reject."""
    obj = _unpack(payload)
    if msgpack.packb(obj) != payload:
        raise Reject(RecordReason.NON_CANONICAL, "the payload is not canonical msgpack")
    if type(obj) is not tuple or not obj or type(obj[0]) is not int:
        raise Reject(RecordReason.MALFORMED, "the payload is not a versioned array")
    if obj[0] != RECORD_VERSION:
        raise Reject(RecordReason.UNKNOWN_VERSION, f"version {obj[0]}, we read {RECORD_VERSION}")
    if len(obj) != FIELD_COUNT:
        raise Reject(RecordReason.MALFORMED, f"{len(obj)} fields, not {FIELD_COUNT}")
    return _fields(obj)


def _unpack(payload: bytes) -> object:
    try:
        return msgpack.unpackb(payload, **_UNPACK_LIMITS)
    except (msgpack.OutOfData, msgpack.ExtraData):
        raise Reject(
            RecordReason.MALFORMED, "the payload is cut short or has extra bytes"
        ) from None
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        # UnicodeDecodeError, StackError and the max_* caps all land here.
        raise Reject(RecordReason.MALFORMED, f"not a record: {type(exc).__name__}") from None


def _fields(obj: tuple[object, ...]) -> Payload:
    capacity = _int(obj[12], 1, MAX_CAPACITY, "capacity")
    issued_at = _int(obj[14], 0, MAX_INT, "issued_at")
    expires_at = _int(obj[15], 0, MAX_INT, "expires_at")
    if not 0 < expires_at - issued_at <= MAX_LIFETIME_MS:
        raise Reject(RecordReason.BAD_FIELD, "expires_at must follow issued_at by up to a day")
    return Payload(
        vpn_id=_bytes(obj[1], UUID_SIZE, "vpn_id"),
        founder_key=_bytes(obj[2], KEY_SIZE, "founder_key"),
        salt=_bytes(obj[3], SALT_SIZE, "salt"),
        delegation=_delegation(obj[4]),
        signer=_bytes(obj[5], KEY_SIZE, "signer"),
        public_ips=_public_ips(obj[6]),
        guest_port=_int(obj[7], 1, 65535, "guest_port"),
        guest_public_key=_bytes(obj[8], KEY_SIZE, "guest_public_key"),
        guest_private_key=_bytes(obj[9], KEY_SIZE, "guest_private_key"),
        soliciting=_bool(obj[10], "soliciting"),
        members=_int(obj[11], 0, capacity, "members"),
        capacity=capacity,
        seq=_int(obj[13], 0, MAX_INT, "seq"),
        issued_at=issued_at,
        expires_at=expires_at,
    )


def _bytes(value: object, size: int, name: str) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise Reject(RecordReason.BAD_FIELD, f"{name} is not {size} bytes")
    return value


def _int(value: object, low: int, high: int, name: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise Reject(RecordReason.BAD_FIELD, f"{name} is not an integer in [{low}, {high}]")
    return value


def _bool(value: object, name: str) -> bool:
    if type(value) is not bool:
        raise Reject(RecordReason.BAD_FIELD, f"{name} is not a boolean")
    return value


def _array(value: object, low: int, high: int, name: str) -> tuple[object, ...]:
    if type(value) is not tuple or not low <= len(value) <= high:
        raise Reject(RecordReason.BAD_FIELD, f"{name} is not a list of {low} to {high} items")
    return value


def _delegation(value: object) -> tuple[int, tuple[bytes, ...], bytes]:
    version, guardians, signature = _array(value, 3, 3, "delegation")
    keys = tuple(
        _bytes(k, KEY_SIZE, "guardian") for k in _array(guardians, 0, MAX_GUARDIANS, "guardians")
    )
    if len(set(keys)) != len(keys):
        raise Reject(RecordReason.BAD_FIELD, "a guardian is listed twice")
    return (
        _int(version, 0, MAX_INT, "delegation version"),
        keys,
        _bytes(signature, SIGNATURE_SIZE, "delegation signature"),
    )


def _public_ips(value: object) -> tuple[str, ...]:
    ips = tuple(_ip(item) for item in _array(value, 1, MAX_PUBLIC_IPS, "public_ips"))
    if len(set(ips)) != len(ips):
        raise Reject(RecordReason.BAD_FIELD, "a public IP is listed twice")
    return ips


def _ip(value: object) -> str:
    if type(value) is not str or len(value) > MAX_IP_TEXT:
        raise Reject(RecordReason.BAD_FIELD, "a public IP is not an address string")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise Reject(RecordReason.BAD_FIELD, f"{value[:MAX_IP_TEXT]!r} is not an IP") from None
    # Canonical text only, so one address has one encoding; and only addresses another
    # host could ever reach.
    if str(address) != value:
        raise Reject(RecordReason.BAD_FIELD, f"{value!r} is not in canonical form")
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        raise Reject(RecordReason.BAD_FIELD, f"{value} is not a reachable unicast address")
    if address.is_link_local:
        raise Reject(RecordReason.BAD_FIELD, f"{value} is link-local")
    return value
