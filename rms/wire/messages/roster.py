"""The `roster.*` message family: replicating a VPN's signed roster among its members.

Members gossip which roster version they hold (`roster.have`), fetch a newer one
(`roster.get`) and hand it over (`roster.put`, carrying the guardian-signed roster document
as bytes, so its own signature travels with it). Towards the guardians a member says it is
alive (`roster.heartbeat`), that it leaves (`roster.leave`), that it wants a new WireGuard
key (`roster.rotate`, the public half of a key it made itself) or that its endpoint changed
(`roster.endpoint`). docs/admission.md, "Replication", has the exchange.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from rms.wire.envelope import Envelope, WireError
from rms.wire.registry import MessageType
from rms.wire.schema import Bytes, Int, Map

__all__ = [
    "ENDPOINT",
    "ENDPOINT_UPDATE",
    "GET",
    "HAVE",
    "HEARTBEAT",
    "KEY",
    "LEAVE",
    "MAX_ROSTER_BYTES",
    "PUT",
    "ROTATE",
    "SEQ",
    "TYPES",
    "UUID_FIELD",
    "BodyError",
    "Endpoint",
    "EndpointUpdate",
    "Get",
    "Have",
    "Heartbeat",
    "Leave",
    "Put",
    "RosterMessage",
    "Rotate",
    "bytes_field",
    "endpoint_of",
    "expect",
    "int_field",
    "parse_roster_message",
    "uuid_field",
]

MAX_ROSTER_BYTES = 48 * 1024  # a roster of 128 members fits, with room in a 64 KiB frame
UUID_FIELD = Bytes(max_len=16, min_len=16)
KEY = Bytes(max_len=32, min_len=32)
DIGEST = Bytes(max_len=32, min_len=32)
SEQ = Int(0, 2**63 - 1)
ENDPOINT = Map({"ip": Bytes(max_len=16, min_len=4), "port": Int(1, 65535)})

HAVE = MessageType("roster.have", Map({"vpn_id": UUID_FIELD, "seq": SEQ, "digest": DIGEST}))
GET = MessageType("roster.get", Map({"vpn_id": UUID_FIELD}))
PUT = MessageType(
    "roster.put",
    Map({"vpn_id": UUID_FIELD, "roster": Bytes(max_len=MAX_ROSTER_BYTES, min_len=1)}),
)
HEARTBEAT = MessageType("roster.heartbeat", Map({"vpn_id": UUID_FIELD, "seq": SEQ}))
LEAVE = MessageType("roster.leave", Map({"vpn_id": UUID_FIELD}))
ROTATE = MessageType("roster.rotate", Map({"vpn_id": UUID_FIELD, "wg_public_key": KEY}))
ENDPOINT_UPDATE = MessageType("roster.endpoint", Map({"vpn_id": UUID_FIELD, "endpoint": ENDPOINT}))
TYPES: tuple[MessageType, ...] = (HAVE, GET, PUT, HEARTBEAT, LEAVE, ROTATE, ENDPOINT_UPDATE)


class BodyError(ValueError):
    """A body that fits its schema but means nothing valid (a remote error: drop it)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a member's WireGuard interface listens: public IP and UDP port."""

    ip: IPv4Address | IPv6Address
    port: int

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not in 1..65535")

    def body(self) -> dict[str, object]:
        """The endpoint as a body field."""
        return {"ip": self.ip.packed, "port": self.port}

    def __str__(self) -> str:
        host = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{host}:{self.port}"


def endpoint_of(value: object) -> Endpoint:
    """The endpoint in a decoded body field; BodyError if the address is not 4 or 16 bytes."""
    if not isinstance(value, Mapping):
        raise WireError("an endpoint field is not a map")
    ip, port = bytes_field(value, "ip"), int_field(value, "port")
    if len(ip) == 4:
        return Endpoint(IPv4Address(ip), port)
    if len(ip) == 16:
        return Endpoint(IPv6Address(ip), port)
    raise BodyError(f"an endpoint address of {len(ip)} bytes is neither IPv4 nor IPv6")


def bytes_field(body: Mapping[str, object], name: str) -> bytes:
    """A bytes field of a checked body (a wrong type means a hand-built body: our bug)."""
    value = body.get(name)
    if not isinstance(value, bytes):
        raise WireError(f"body field {name!r} is not bytes")
    return value


def int_field(body: Mapping[str, object], name: str) -> int:
    """An int field of a checked body."""
    value = body.get(name)
    if type(value) is not int:
        raise WireError(f"body field {name!r} is not an integer")
    return value


def uuid_field(body: Mapping[str, object], name: str) -> uuid.UUID:
    """A 16-byte UUID field of a checked body."""
    value = bytes_field(body, name)
    if len(value) != 16:
        raise WireError(f"body field {name!r} is not a 16-byte UUID")
    return uuid.UUID(bytes=value)


def expect(envelope: Envelope, expected: MessageType) -> None:
    """Raise WireError unless the envelope is of the expected type."""
    if envelope.msg_type != expected:
        raise WireError(f"expected a {expected.name} envelope, got {envelope.msg_type.name}")


@dataclass(frozen=True, slots=True)
class Have:
    """The roster version the sender holds."""

    vpn_id: uuid.UUID
    seq: int
    digest: bytes

    def body(self) -> dict[str, object]:
        """The body to encode as a `roster.have`."""
        return {"vpn_id": self.vpn_id.bytes, "seq": self.seq, "digest": self.digest}

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Have:
        """The message carried by an accepted `roster.have` envelope."""
        expect(envelope, HAVE)
        body = envelope.body
        return cls(uuid_field(body, "vpn_id"), int_field(body, "seq"), bytes_field(body, "digest"))


@dataclass(frozen=True, slots=True)
class Get:
    """Please send me the roster you hold."""

    vpn_id: uuid.UUID

    def body(self) -> dict[str, object]:
        """The body to encode as a `roster.get`."""
        return {"vpn_id": self.vpn_id.bytes}

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Get:
        """The message carried by an accepted `roster.get` envelope."""
        expect(envelope, GET)
        return cls(uuid_field(envelope.body, "vpn_id"))


@dataclass(frozen=True, slots=True)
class Put:
    """A signed roster document, as bytes."""

    vpn_id: uuid.UUID
    roster: bytes

    def body(self) -> dict[str, object]:
        """The body to encode as a `roster.put`."""
        return {"vpn_id": self.vpn_id.bytes, "roster": self.roster}

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Put:
        """The message carried by an accepted `roster.put` envelope."""
        expect(envelope, PUT)
        return cls(uuid_field(envelope.body, "vpn_id"), bytes_field(envelope.body, "roster"))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The sender is alive and holds roster `seq` (told to the guardians)."""

    vpn_id: uuid.UUID
    seq: int

    def body(self) -> dict[str, object]:
        """The body to encode as a `roster.heartbeat`."""
        return {"vpn_id": self.vpn_id.bytes, "seq": self.seq}

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Heartbeat:
        """The message carried by an accepted `roster.heartbeat` envelope."""
        expect(envelope, HEARTBEAT)
        return cls(uuid_field(envelope.body, "vpn_id"), int_field(envelope.body, "seq"))


@dataclass(frozen=True, slots=True)
class Leave:
    """The sender leaves the VPN."""

    vpn_id: uuid.UUID

    def body(self) -> dict[str, object]:
        """The body to encode as a `roster.leave`."""
        return {"vpn_id": self.vpn_id.bytes}

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Leave:
        """The message carried by an accepted `roster.leave` envelope."""
        expect(envelope, LEAVE)
        return cls(uuid_field(envelope.body, "vpn_id"))


@dataclass(frozen=True, slots=True)
class Rotate:
    """The sender asks for its WireGuard public key to become this one."""

    vpn_id: uuid.UUID
    wg_public_key: bytes

    def body(self) -> dict[str, object]:
        """The body to encode as a `roster.rotate`."""
        return {"vpn_id": self.vpn_id.bytes, "wg_public_key": self.wg_public_key}

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> Rotate:
        """The message carried by an accepted `roster.rotate` envelope."""
        expect(envelope, ROTATE)
        body = envelope.body
        return cls(uuid_field(body, "vpn_id"), bytes_field(body, "wg_public_key"))


@dataclass(frozen=True, slots=True)
class EndpointUpdate:
    """The sender's WireGuard endpoint is now this one."""

    vpn_id: uuid.UUID
    endpoint: Endpoint

    def body(self) -> dict[str, object]:
        """The body to encode as a `roster.endpoint`."""
        return {"vpn_id": self.vpn_id.bytes, "endpoint": self.endpoint.body()}

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> EndpointUpdate:
        """The message carried by an accepted `roster.endpoint` envelope."""
        expect(envelope, ENDPOINT_UPDATE)
        body = envelope.body
        return cls(uuid_field(body, "vpn_id"), endpoint_of(body.get("endpoint")))


RosterMessage = Have | Get | Put | Heartbeat | Leave | Rotate | EndpointUpdate

_PARSERS: dict[str, Callable[[Envelope], RosterMessage]] = {
    HAVE.name: Have.from_envelope,
    GET.name: Get.from_envelope,
    PUT.name: Put.from_envelope,
    HEARTBEAT.name: Heartbeat.from_envelope,
    LEAVE.name: Leave.from_envelope,
    ROTATE.name: Rotate.from_envelope,
    ENDPOINT_UPDATE.name: EndpointUpdate.from_envelope,
}


def parse_roster_message(envelope: Envelope) -> RosterMessage | None:
    """The typed message of a `roster.*` envelope, None for other families; BodyError if bad."""
    parser = _PARSERS.get(envelope.msg_type.name)
    return None if parser is None else parser(envelope)
