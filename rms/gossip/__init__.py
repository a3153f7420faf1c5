"""Broadcast of signed resource requests over the management VPNs (docs/broadcast.md).

`Gossip` is the sans-IO core; `rms.gossip.adapter` runs it over UDP; `rms.gossip.sim` runs
thousands of cores over an in-memory network.
"""

from rms.gossip.core import Gossip
from rms.gossip.events import AnswerReceived, Delivered, Dropped, Output, Send
from rms.gossip.requests import (
    Answer,
    AnswerRejected,
    Request,
    digest_of,
    make_answer,
    make_request,
    open_answer,
)
from rms.wire.messages.gossip import RequestBody

__all__ = [
    "Answer",
    "AnswerReceived",
    "AnswerRejected",
    "Delivered",
    "Dropped",
    "Gossip",
    "Output",
    "Request",
    "RequestBody",
    "Send",
    "digest_of",
    "make_answer",
    "make_request",
    "open_answer",
]
