"""The `node.*` message family: liveness between two nodes.

`node.ping` asks a peer to answer; `node.pong` answers, echoing the ping's request id so
the asker can match the answer to its question (and so an unsolicited pong is easy to
drop). The request id is the asker's choice, at most 16 bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rms.wire.envelope import Envelope, WireError
from rms.wire.registry import MessageType
from rms.wire.schema import Bytes, Map

__all__ = ["MAX_REQUEST_ID", "PING", "PONG", "TYPES", "Ping", "Pong"]

MAX_REQUEST_ID = 16

PING = MessageType("node.ping", Map({"request_id": Bytes(max_len=MAX_REQUEST_ID)}))
PONG = MessageType("node.pong", Map({"request_id": Bytes(max_len=MAX_REQUEST_ID)}))
TYPES: tuple[MessageType, ...] = (PING, PONG)


def _request_id(body: Mapping[str, object], expected: MessageType) -> bytes:
    value = body.get("request_id")
    if not isinstance(value, bytes):
        # Decoded bodies are already checked, so this means a hand-built body: our bug.
        raise WireError(f"{expected.name} body has no request_id bytes")
    return value


@dataclass(frozen=True, slots=True)
class Ping:
    """A liveness question."""

    request_id: bytes

    def body(self) -> dict[str, object]:
        """The body to encode as a `node.ping`."""
        return {"request_id": self.request_id}

    def answer(self) -> Pong:
        """The pong that answers this ping."""
        return Pong(self.request_id)

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Ping:
        """The ping carried by an accepted `node.ping` envelope."""
        _expect(envelope, PING)
        return cls(_request_id(envelope.body, PING))


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a ping, echoing its request id."""

    request_id: bytes

    def body(self) -> dict[str, object]:
        """The body to encode as a `node.pong`."""
        return {"request_id": self.request_id}

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Pong:
        """The pong carried by an accepted `node.pong` envelope."""
        _expect(envelope, PONG)
        return cls(_request_id(envelope.body, PONG))


def _expect(envelope: Envelope, expected: MessageType) -> None:
    if envelope.msg_type != expected:
        raise WireError(f"expected a {expected.name} envelope, got {envelope.msg_type.name}")
