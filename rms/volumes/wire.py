"""Shared pieces of both ends of the volume protocol: decoder limits and body access.

A volume message is one signed envelope of the `volumes.*` family in one length-prefixed
frame (rms.net.framing). Both ends use a decoder that knows only that family, with a
message cap of `MAX_MESSAGE` bytes (the largest, a grant, is under 3 KiB), a 60 s past and
30 s future window (docs/volumes.md, "Replays and retries") and the wire replay cache.
"""

from __future__ import annotations

from rms.wire.decoder import Decoder, DecoderConfig
from rms.wire.envelope import Envelope
from rms.wire.messages import volumes as msg
from rms.wire.registry import Registry

__all__ = ["MAX_AGE_S", "MAX_FUTURE_S", "MAX_MESSAGE", "body_bytes", "body_int", "new_decoder"]

MAX_MESSAGE = 4096
MAX_AGE_S = 60.0
MAX_FUTURE_S = 30.0
REPLAY_CAPACITY = 16384


def new_decoder() -> Decoder:
    """A decoder for the `volumes.*` family with the protocol's caps and windows."""
    config = DecoderConfig(
        max_datagram=MAX_MESSAGE,
        max_str_len=1024,
        max_bin_len=MAX_MESSAGE,
        max_array_len=16,
        max_map_len=16,
        max_past_s=MAX_AGE_S,
        max_future_s=MAX_FUTURE_S,
        replay_capacity=REPLAY_CAPACITY,
    )
    return Decoder(Registry(msg.TYPES), config)


def body_bytes(envelope: Envelope, name: str) -> bytes:
    """A bytes field of an accepted body (the decoder checked it; b"" if absent)."""
    value = envelope.body.get(name)
    return value if type(value) is bytes else b""


def body_int(envelope: Envelope, name: str) -> int:
    """An int field of an accepted body (the decoder checked it; -1 if absent)."""
    value = envelope.body.get(name)
    return value if type(value) is int else -1


def body_str(envelope: Envelope, name: str) -> str:
    """A str field of an accepted body (the decoder checked it; "" if absent)."""
    value = envelope.body.get(name)
    return value if type(value) is str else ""
