"""The `gossip.*` message family: broadcast resource requests and their boxed answers.

`gossip.request` is signed by the requester and travels in clear (seed: "All traffic across
the VPNs is end-to-end encrypted except for broadcast resource requests"): any member may
answer it. The envelope's sender is who asks and its timestamp is the origin time; both are
signed with the body. The hop count forwarders decrement is not here: it lives in the
unsigned gossip frame around these bytes (rms.gossip.frames), bounded by `hop_limit` below.

`gossip.answer` goes back point to point; its `box` is a NaCl Box from the answerer to the
requester holding the offer, so relays see only the request id. docs/broadcast.md has both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import TypeVar

from rms.wire.envelope import Envelope, WireError
from rms.wire.registry import MessageType
from rms.wire.schema import Bytes, Int, List, Map, Str

__all__ = [
    "ANSWER",
    "KINDS",
    "MAX_BOX",
    "MAX_EXCLUDED",
    "MAX_HOP_LIMIT",
    "MAX_REPLY_ADDRESSES",
    "MAX_TERMS",
    "OFFER",
    "REQUEST",
    "REQUEST_ID_SIZE",
    "TYPES",
    "AnswerBody",
    "RequestBody",
]

REQUEST_ID_SIZE = 16
MAX_EXCLUDED = 64  # locality or network UUIDs a requester may rule out
MAX_REPLY_ADDRESSES = 4  # one management address per VPN, and a node is in at most 4
MAX_HOP_LIMIT = 255
MAX_BOX = 4096
MAX_TERMS = 512  # opaque kind-specific terms of a request or an offer
KINDS = ("storage", "cpu")  # storage: bytes; cpu: millicores

_UUID = Bytes(max_len=16, min_len=16)
_REQUEST_ID = Bytes(max_len=REQUEST_ID_SIZE, min_len=REQUEST_ID_SIZE)

REQUEST = MessageType(
    "gossip.request",
    Map(
        {
            "request_id": _REQUEST_ID,
            "kind": Str(max_len=16, min_len=1),
            "amount": Int(1, 2**63 - 1),
            "hop_limit": Int(1, MAX_HOP_LIMIT),
            "exclude_locations": List(_UUID, MAX_EXCLUDED),
            "exclude_networks": List(_UUID, MAX_EXCLUDED),
            "reply_addresses": List(Bytes(max_len=16, min_len=16), MAX_REPLY_ADDRESSES),
        },
        {"terms": Bytes(max_len=MAX_TERMS)},  # kind-specific, e.g. rms.wire.messages.volumes
    ),
)
# NaCl Box overhead is a 24-byte nonce and a 16-byte tag: anything shorter is no box.
ANSWER = MessageType(
    "gossip.answer",
    Map({"request_id": _REQUEST_ID, "box": Bytes(max_len=MAX_BOX, min_len=40)}),
)
# Not a message type: the schema of the plaintext inside an answer's box.
OFFER = Map(
    {"amount": Int(1, 2**63 - 1), "addresses": List(Bytes(max_len=16, min_len=16), 4)},
    {"expires_ms": Int(0, 2**63 - 1), "terms": Bytes(max_len=MAX_TERMS)},
)
TYPES: tuple[MessageType, ...] = (REQUEST, ANSWER)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RequestBody:
    """What a requester asks for; the body of a `gossip.request`."""

    request_id: bytes
    kind: str
    amount: int
    hop_limit: int
    exclude_locations: tuple[bytes, ...] = ()
    exclude_networks: tuple[bytes, ...] = ()
    reply_addresses: tuple[IPv6Address, ...] = ()
    terms: bytes = b""  # packed kind-specific terms; empty means none (and is not sent)

    def body(self) -> dict[str, object]:
        """The body to encode as a `gossip.request`."""
        if self.kind not in KINDS:
            raise WireError(f"a request kind is one of {KINDS}, got {self.kind!r}")
        body: dict[str, object] = {
            "request_id": self.request_id,
            "kind": self.kind,
            "amount": self.amount,
            "hop_limit": self.hop_limit,
            "exclude_locations": list(self.exclude_locations),
            "exclude_networks": list(self.exclude_networks),
            "reply_addresses": [a.packed for a in self.reply_addresses],
        }
        if self.terms:
            body["terms"] = self.terms
        return body

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> RequestBody | None:
        """The request an accepted `gossip.request` carries; None if its kind is unknown."""
        _expect(envelope, REQUEST)
        body = envelope.body
        kind = _get(body, "kind", str)
        if kind not in KINDS:  # a peer's value: refused, never raised
            return None
        return cls(
            request_id=_get(body, "request_id", bytes),
            kind=kind,
            amount=_get(body, "amount", int),
            hop_limit=_get(body, "hop_limit", int),
            exclude_locations=_get(body, "exclude_locations", tuple),
            exclude_networks=_get(body, "exclude_networks", tuple),
            reply_addresses=tuple(IPv6Address(a) for a in _get(body, "reply_addresses", tuple)),
            terms=_get(body, "terms", bytes) if "terms" in body else b"",
        )


@dataclass(frozen=True, slots=True)
class AnswerBody:
    """The body of a `gossip.answer`: which request it answers, and the boxed offer."""

    request_id: bytes
    box: bytes

    def body(self) -> dict[str, object]:
        """The body to encode as a `gossip.answer`."""
        return {"request_id": self.request_id, "box": self.box}

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> AnswerBody:
        """The answer an accepted `gossip.answer` carries."""
        _expect(envelope, ANSWER)
        return cls(_get(envelope.body, "request_id", bytes), _get(envelope.body, "box", bytes))


def _get(body: Mapping[str, object], name: str, kind: type[T]) -> T:
    value = body.get(name)
    if not isinstance(value, kind):
        # Decoded bodies are already checked, so this means a hand-built body: our bug.
        raise WireError(f"gossip body field {name!r} is not {kind.__name__}")
    return value


def _expect(envelope: Envelope, expected: MessageType) -> None:
    if envelope.msg_type != expected:
        raise WireError(f"expected a {expected.name} envelope, got {envelope.msg_type.name}")
