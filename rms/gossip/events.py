"""What the gossip core asks its adapter to do, and what it reports."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from rms.gossip.requests import Answer, Request

__all__ = ["AnswerReceived", "Delivered", "Dropped", "Output", "Send"]


@dataclass(frozen=True, slots=True)
class Send:
    """Send one frame to the neighbour whose node key is `to_peer`, over VPN `vpn_id`."""

    to_peer: bytes
    vpn_id: uuid.UUID
    data: bytes


@dataclass(frozen=True, slots=True)
class Delivered:
    """A new, verified request from someone else: the local RMS may answer it."""

    request: Request
    from_peer: bytes
    hops_left: int  # after clamping; 1 means it went no further than this node


@dataclass(frozen=True, slots=True)
class AnswerReceived:
    """An answer to one of this node's own requests, opened."""

    answer: Answer
    request: Request


@dataclass(frozen=True, slots=True)
class Dropped:
    """Input refused; `reason` is a short word, counted in `status()`."""

    reason: str
    peer: bytes | None


Output = Send | Delivered | AnswerReceived | Dropped
