"""The signed wire format: envelopes, body schemas, message types, decoding (sans-IO).

Encode with `encode(identity, msg_type, body, now)`; decode with
`Decoder().decode(datagram, now)`, which returns `Accepted` or `Rejected` and never raises
on peer input. `now` is always wall-clock seconds since the epoch (`time.time()` in the
adapter), since timestamps are compared across machines. docs/wire.md is the reference.
"""

from rms.wire.decoder import Accepted, Decoder, DecoderConfig, Rejected, RejectReason
from rms.wire.envelope import (
    DEFAULT_MAX_DATAGRAM,
    NONCE_SIZE,
    SIGNATURE_SIZE,
    SIGNING_CONTEXT,
    VERSION,
    EncodeError,
    Envelope,
    Signer,
    WireError,
    encode,
    sign_payload,
)
from rms.wire.messages import default_registry
from rms.wire.registry import MessageType, Registry
from rms.wire.replay import ReplayCache
from rms.wire.schema import Bool, Bytes, Field, Int, List, Map, SchemaViolation, Str

__all__ = [
    "DEFAULT_MAX_DATAGRAM",
    "NONCE_SIZE",
    "SIGNATURE_SIZE",
    "SIGNING_CONTEXT",
    "VERSION",
    "Accepted",
    "Bool",
    "Bytes",
    "Decoder",
    "DecoderConfig",
    "EncodeError",
    "Envelope",
    "Field",
    "Int",
    "List",
    "Map",
    "MessageType",
    "Registry",
    "RejectReason",
    "Rejected",
    "ReplayCache",
    "SchemaViolation",
    "Signer",
    "Str",
    "WireError",
    "default_registry",
    "encode",
    "sign_payload",
]
