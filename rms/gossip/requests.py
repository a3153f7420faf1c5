"""Making signed requests, and answering them confidentially (sans-IO).

A request is a signed `gossip.request` envelope, readable by every member (seed: broadcast
resource requests are the one thing not encrypted end to end). An answer is a signed
`gossip.answer` envelope whose offer is a NaCl Box from the answerer's X25519 key to the
requester's, both derived from the ed25519 node keys (rms.identity): whoever relays it sees
which request it answers, never what is offered. docs/broadcast.md has the formats.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
from nacl.exceptions import CryptoError
from nacl.public import Box

from rms.identity import NodeIdentity, peer_box_public_key
from rms.wire.decoder import Accepted, Decoder
from rms.wire.envelope import Envelope, encode
from rms.wire.messages.gossip import ANSWER, MAX_BOX, OFFER, REQUEST, AnswerBody, RequestBody
from rms.wire.schema import SchemaViolation

__all__ = [
    "Answer",
    "AnswerRejected",
    "Request",
    "digest_of",
    "make_answer",
    "make_request",
    "open_answer",
    "request_from_envelope",
]

_OFFER_LIMITS: dict[str, Any] = {
    "raw": False,
    "strict_map_key": True,
    "use_list": False,
    "max_bin_len": MAX_BOX,
    "max_str_len": MAX_BOX,
    "max_array_len": 16,
    "max_map_len": 16,
    "max_ext_len": 0,
}


@dataclass(frozen=True, slots=True)
class Request:
    """A verified request: who asks (`requester`, an ed25519 key), what, and when."""

    requester: bytes
    origin_ms: int  # the envelope's signed timestamp
    body: RequestBody
    data: bytes  # the signed envelope exactly as received, forwarded byte for byte
    digest: bytes  # SHA-256 of `data`, the dedupe key

    @property
    def request_id(self) -> bytes:
        """The requester's id for this request."""
        return self.body.request_id


@dataclass(frozen=True, slots=True)
class Answer:
    """An opened answer: who offers (`answerer`), for which request, and the offer."""

    answerer: bytes
    request_id: bytes
    offer: Mapping[str, object]  # fields of rms.wire.messages.gossip.OFFER
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class AnswerRejected:
    """An answer that could not be opened; `reason` is a short word for counters."""

    reason: str


def digest_of(data: bytes) -> bytes:
    """The dedupe key of a signed request: SHA-256 of its exact bytes, signature included."""
    return hashlib.sha256(data).digest()


def make_request(
    identity: NodeIdentity, body: RequestBody, now: float, *, nonce: bytes | None = None
) -> Request:
    """Sign `body` as a request from `identity` at wall-clock time `now` (s)."""
    data = encode(identity, REQUEST, body.body(), now, nonce=nonce)
    return Request(identity.public_key, int(now * 1000), body, data, digest_of(data))


def request_from_envelope(envelope: Envelope, data: bytes, digest: bytes) -> Request | None:
    """The request an accepted `gossip.request` envelope carries; None if it makes no sense."""
    body = RequestBody.from_envelope(envelope)
    if body is None:
        return None
    return Request(envelope.sender, envelope.timestamp_ms, body, data, digest)


def make_answer(
    request: Request, offer_body: Mapping[str, object], identity: NodeIdentity, now: float
) -> bytes:
    """A signed answer to `request` whose offer only the requester can read."""
    plain: bytes = msgpack.packb(OFFER.conform_map(offer_body, 1, True))
    box = Box(identity.box_private_key(), peer_box_public_key(request.requester))
    sealed = bytes(box.encrypt(plain, os.urandom(Box.NONCE_SIZE)))
    return encode(identity, ANSWER, AnswerBody(request.request_id, sealed).body(), now)


def open_answer(
    data: bytes, identity: NodeIdentity, now: float, decoder: Decoder | None = None
) -> Answer | AnswerRejected:
    """The answer in `data` if it is signed, fresh and boxed to `identity`; never raises."""
    result = (decoder or Decoder()).decode(data, now)
    if not isinstance(result, Accepted):
        return AnswerRejected(result.reason.value)
    envelope = result.envelope
    if envelope.msg_type != ANSWER:
        return AnswerRejected("not_an_answer")
    answer = AnswerBody.from_envelope(envelope)
    offer = _unbox(answer.box, envelope.sender, identity)
    if isinstance(offer, AnswerRejected):
        return offer
    return Answer(envelope.sender, answer.request_id, offer, envelope.timestamp_ms)


def _unbox(
    sealed: bytes, sender: bytes, identity: NodeIdentity
) -> dict[str, object] | AnswerRejected:
    try:
        box = Box(identity.box_private_key(), peer_box_public_key(sender))
        plain = box.decrypt(sealed)
    except (CryptoError, ValueError, TypeError, RuntimeError):
        return AnswerRejected("bad_box")
    try:
        return OFFER.conform_map(msgpack.unpackb(plain, **_OFFER_LIMITS), 1, False)
    except SchemaViolation:
        return AnswerRejected("bad_offer")
    except Exception:  # the sender boxed junk: any msgpack failure is one kind of drop
        return AnswerRejected("bad_offer")
