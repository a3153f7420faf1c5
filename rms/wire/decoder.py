"""Decoding peer datagrams: every input ends as `Accepted` or `Rejected`, never an exception.

Checks run cheapest first, so that junk costs little and only well-formed, fresh, unseen
envelopes with a valid body pay for an ed25519 verification (~60 us here):

    size -> msgpack (with caps) -> version -> header -> type -> timestamp window
    -> replay floor -> replay cache -> body schema -> signature -> remember the nonce

A rejection names the first check that failed (docs/wire.md, "Reject reasons"). Only a
verified envelope enters the replay cache, so forged datagrams cannot flush it.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack
from nacl import bindings
from nacl.exceptions import CryptoError

from rms.wire.envelope import (
    BODY_DEPTH,
    DEFAULT_MAX_DATAGRAM,
    HEADER_FIELDS,
    NONCE_SIZE,
    PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    SIGNING_CONTEXT,
    VERSION,
    Envelope,
    WireError,
)
from rms.wire.messages import default_registry
from rms.wire.registry import MessageType, Registry
from rms.wire.replay import ReplayCache
from rms.wire.schema import SchemaViolation

__all__ = ["Accepted", "Decoder", "DecoderConfig", "RejectReason", "Rejected"]

MAX_DETAIL = 120


class RejectReason(enum.Enum):
    """Why a datagram was dropped."""

    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    OVERSIZED = "oversized"
    UNKNOWN_VERSION = "unknown_version"
    UNKNOWN_TYPE = "unknown_type"
    STALE = "stale"
    FUTURE = "future"
    REPLAYED = "replayed"
    BAD_BODY = "bad_body"
    BAD_SIGNATURE = "bad_signature"


@dataclass(frozen=True, slots=True)
class Accepted:
    """The datagram is a valid, fresh, first-seen message."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Rejected:
    """The datagram was dropped; `detail` is short, holds no secret, is safe to log."""

    reason: RejectReason
    detail: str


@dataclass(frozen=True, slots=True)
class DecoderConfig:
    """Caps and windows of one decoder; the defaults suit the management VPNs."""

    max_datagram: int = DEFAULT_MAX_DATAGRAM
    max_str_len: int = 16 * 1024  # bytes of any one msgpack str
    max_bin_len: int = DEFAULT_MAX_DATAGRAM  # bytes of any one msgpack bin
    max_array_len: int = 4096  # items of any one array (msgpack allocates them up front)
    max_map_len: int = 256  # pairs of any one map
    max_past_s: float = 120.0
    max_future_s: float = 30.0
    replay_capacity: int = 65536

    def __post_init__(self) -> None:
        sizes = (self.max_datagram, self.max_str_len, self.max_bin_len)
        if min(*sizes, self.max_array_len, self.max_map_len, self.replay_capacity) < 1:
            raise ValueError("decoder caps and replay capacity must be positive")
        if self.max_past_s < 0 or self.max_future_s < 0:
            raise ValueError("timestamp windows must not be negative")


class _Header(NamedTuple):
    name: str
    sender: bytes
    timestamp_ms: int
    nonce: bytes
    body: object


class _Reject(Exception):  # internal control flow, always caught in decode()
    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail[:MAX_DETAIL]


class Decoder:
    """Turns peer datagrams into envelopes; keeps the replay cache and reject counts."""

    def __init__(
        self, registry: Registry | None = None, config: DecoderConfig | None = None
    ) -> None:
        self.registry = default_registry() if registry is None else registry
        self.config = DecoderConfig() if config is None else config
        self._past_ms = int(self.config.max_past_s * 1000)
        self._future_ms = int(self.config.max_future_s * 1000)
        self.replay = ReplayCache(self.config.replay_capacity, self._past_ms)
        self.accepted = 0
        self.rejected: Counter[RejectReason] = Counter()
        self._limits: dict[str, Any] = {
            "raw": False,
            "strict_map_key": True,
            "use_list": False,
            "max_str_len": self.config.max_str_len,
            "max_bin_len": self.config.max_bin_len,
            "max_array_len": self.config.max_array_len,
            "max_map_len": self.config.max_map_len,
            "max_ext_len": 0,
        }

    def decode(self, data: bytes, now: float) -> Accepted | Rejected:
        """Check one datagram received at wall-clock time `now` (seconds since the epoch)."""
        if not math.isfinite(now):  # our clock, not the peer's data: a local error
            raise WireError(f"now must be a finite wall-clock time in seconds, got {now}")
        try:
            envelope = self._decode(data, int(now * 1000))
        except _Reject as reject:
            self.rejected[reject.reason] += 1
            return Rejected(reject.reason, reject.detail)
        self.accepted += 1
        return Accepted(envelope)

    def _decode(self, data: bytes, now_ms: int) -> Envelope:
        payload = self._payload(data)
        header = _header(self._unpack(payload))
        msg_type = self._msg_type(header.name)
        self._check_time(header.timestamp_ms, now_ms)
        key = header.sender + header.nonce
        if key in self.replay:
            raise _Reject(RejectReason.REPLAYED, "this sender already used this nonce")
        body = _body(msg_type, header.body)
        _verify(data[:SIGNATURE_SIZE], payload, header.sender)
        self.replay.add(key, header.timestamp_ms, now_ms)
        return Envelope(VERSION, msg_type, header.sender, header.timestamp_ms, header.nonce, body)

    def _payload(self, data: bytes) -> bytes:
        if len(data) > self.config.max_datagram:
            raise _Reject(
                RejectReason.OVERSIZED,
                f"{len(data)} bytes, the cap is {self.config.max_datagram}",
            )
        if len(data) <= SIGNATURE_SIZE:
            raise _Reject(RejectReason.TRUNCATED, f"{len(data)} bytes, shorter than a signature")
        return data[SIGNATURE_SIZE:]

    def _unpack(self, payload: bytes) -> object:
        try:
            return msgpack.unpackb(payload, **self._limits)
        except msgpack.ExtraData:
            raise _Reject(RejectReason.MALFORMED, "bytes after the envelope") from None
        except msgpack.exceptions.StackError:
            raise _Reject(RejectReason.OVERSIZED, "nested too deep for msgpack") from None
        except UnicodeDecodeError:
            raise _Reject(RejectReason.MALFORMED, "a string is not UTF-8") from None
        except msgpack.OutOfData:
            raise _Reject(RejectReason.TRUNCATED, "the envelope ends early") from None
        except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
            raise _classify(exc) from None

    def _msg_type(self, name: str) -> MessageType:
        msg_type = self.registry.get(name)
        if msg_type is None:
            raise _Reject(RejectReason.UNKNOWN_TYPE, f"type {name[:64]!r}")
        return msg_type

    def _check_time(self, timestamp_ms: int, now_ms: int) -> None:
        age_ms = now_ms - timestamp_ms
        if age_ms > self._past_ms:
            raise _Reject(
                RejectReason.STALE,
                f"sent {age_ms / 1000:.1f} s ago, window {self._past_ms / 1000:g} s",
            )
        if -age_ms > self._future_ms:
            raise _Reject(
                RejectReason.FUTURE,
                f"sent {-age_ms / 1000:.1f} s ahead, allowed {self._future_ms / 1000:g} s",
            )
        if self.replay.is_below_floor(timestamp_ms):
            raise _Reject(RejectReason.STALE, "older than the replay cache floor")


def _classify(exc: BaseException) -> _Reject:
    # msgpack reports both of these as plain ValueError; its message is the only tell.
    text = str(exc)
    if "incomplete input" in text:
        return _Reject(RejectReason.TRUNCATED, "the envelope ends early")
    if "max_ext_len" in text:  # max_ext_len=0: the envelope never uses msgpack extensions
        return _Reject(RejectReason.MALFORMED, "msgpack extension types are not allowed")
    if "exceeds max_" in text:
        return _Reject(RejectReason.OVERSIZED, f"msgpack cap: {text[:80]}")
    return _Reject(RejectReason.MALFORMED, f"not msgpack: {type(exc).__name__}")


def _header(obj: object) -> _Header:
    if type(obj) is not tuple or not obj:
        raise _Reject(RejectReason.MALFORMED, "the payload is not an envelope array")
    version = obj[0]
    if type(version) is not int:
        raise _Reject(RejectReason.MALFORMED, "the version is not an integer")
    if version != VERSION:
        raise _Reject(RejectReason.UNKNOWN_VERSION, f"version {version}, we speak {VERSION}")
    if len(obj) != HEADER_FIELDS:
        raise _Reject(RejectReason.MALFORMED, f"{len(obj)} envelope fields, not {HEADER_FIELDS}")
    _, name, sender, timestamp_ms, nonce, body = obj
    if type(name) is not str:
        raise _Reject(RejectReason.MALFORMED, "the type is not a string")
    if type(sender) is not bytes or len(sender) != PUBLIC_KEY_SIZE:
        raise _Reject(RejectReason.MALFORMED, "the sender is not a 32-byte public key")
    if type(timestamp_ms) is not int:
        raise _Reject(RejectReason.MALFORMED, "the timestamp is not an integer")
    if type(nonce) is not bytes or len(nonce) != NONCE_SIZE:
        raise _Reject(RejectReason.MALFORMED, f"the nonce is not {NONCE_SIZE} bytes")
    return _Header(name, sender, timestamp_ms, nonce, body)


def _body(msg_type: MessageType, body: object) -> dict[str, object]:
    try:
        return msg_type.body.conform_map(body, BODY_DEPTH, False)
    except SchemaViolation as exc:
        raise _Reject(RejectReason.BAD_BODY, f"{msg_type.name}: {exc}") from None


def _verify(signature: bytes, payload: bytes, sender: bytes) -> None:
    try:
        bindings.crypto_sign_open(signature + SIGNING_CONTEXT + payload, sender)
    except (CryptoError, ValueError, TypeError):
        raise _Reject(RejectReason.BAD_SIGNATURE, "the signature does not verify") from None
