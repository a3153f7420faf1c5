"""Gossip frames: the small unsigned wrapper a request or an answer travels in, hop by hop.

A frame is one msgpack array whose first two items are the frame version and kind:

    push    [1, 0, hops_left, request]           a signed gossip.request, as sent by its origin
    answer  [1, 1, answer]                       a signed gossip.answer, for the receiver
    relay   [1, 2, request_digest, ttl, answer]  a gossip.answer on its way back to the origin

Frames are not signed: they only cross one WireGuard hop between members of a management
VPN, which already authenticates the neighbour. The request inside a push is the origin's
signed envelope, byte for byte, so a forwarder can change nothing of it; what it can change,
`hops_left`, every receiver clamps (docs/broadcast.md, "Hop limits"). Decoding never raises.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import msgpack

__all__ = [
    "DIGEST_SIZE",
    "FRAME_VERSION",
    "AnswerFrame",
    "Frame",
    "FrameKind",
    "Push",
    "Relay",
    "decode_frame",
    "encode_frame",
    "is_push",
]

FRAME_VERSION = 1
DIGEST_SIZE = 32
_MAX_TTL = 255


class FrameKind(enum.IntEnum):
    """The second item of every frame."""

    PUSH = 0
    ANSWER = 1
    RELAY = 2


@dataclass(frozen=True, slots=True)
class Push:
    """A signed request, forwarded with `hops_left` more hops to go."""

    hops_left: int
    request: bytes


@dataclass(frozen=True, slots=True)
class AnswerFrame:
    """A signed, boxed answer addressed to the receiver of the frame."""

    answer: bytes


@dataclass(frozen=True, slots=True)
class Relay:
    """An answer to carry one hop further back along the path its request came by."""

    request_digest: bytes
    ttl: int
    answer: bytes


Frame = Push | AnswerFrame | Relay


def encode_frame(frame: Frame) -> bytes:
    """The bytes of one frame."""
    items: tuple[object, ...]
    if isinstance(frame, Push):
        items = (FrameKind.PUSH.value, frame.hops_left, frame.request)
    elif isinstance(frame, AnswerFrame):
        items = (FrameKind.ANSWER.value, frame.answer)
    else:
        items = (FrameKind.RELAY.value, frame.request_digest, frame.ttl, frame.answer)
    packed: bytes = msgpack.packb((FRAME_VERSION, *items))
    return packed


def is_push(data: bytes) -> bool:
    """Whether `data`, a frame this node encoded, carries a request (counters only)."""
    # encode_frame writes a fixarray header, then the version, then the kind.
    return len(data) > 2 and data[1] == FRAME_VERSION and data[2] == FrameKind.PUSH


def decode_frame(data: bytes, max_frame: int) -> Frame | str:
    """The frame in `data`, or the reason (a short word for counters) it is refused."""
    if len(data) > max_frame:
        return "oversized"
    try:
        obj = msgpack.unpackb(data, **_limits(max_frame))
    except Exception:  # peer bytes: every msgpack failure is one kind of drop
        return "malformed"
    if type(obj) is not tuple or len(obj) < 2 or obj[0] != FRAME_VERSION:
        return "malformed"
    return _frame(obj[1], obj[2:])


def _limits(max_frame: int) -> dict[str, Any]:
    # A frame holds a few scalars and one bin: tight caps keep the parser cheap.
    return {
        "raw": False,
        "strict_map_key": True,
        "use_list": False,
        "max_bin_len": max_frame,
        "max_str_len": 0,
        "max_array_len": 8,
        "max_map_len": 0,
        "max_ext_len": 0,
    }


def _frame(kind: object, rest: tuple[object, ...]) -> Frame | str:
    if kind == FrameKind.PUSH and len(rest) == 2:
        hops, request = rest
        if type(hops) is int and 0 <= hops <= _MAX_TTL and type(request) is bytes:
            return Push(hops, request)
    elif kind == FrameKind.ANSWER and len(rest) == 1:
        if type(rest[0]) is bytes:
            return AnswerFrame(rest[0])
    elif kind == FrameKind.RELAY and len(rest) == 3:
        digest, ttl, answer = rest
        if _is_digest(digest) and type(ttl) is int and 0 <= ttl <= _MAX_TTL:
            return _relay(digest, ttl, answer)
    return "malformed"


def _relay(digest: object, ttl: int, answer: object) -> Frame | str:
    if type(digest) is bytes and type(answer) is bytes:
        return Relay(digest, ttl, answer)
    return "malformed"


def _is_digest(value: object) -> bool:
    return type(value) is bytes and len(value) == DIGEST_SIZE
