"""Shared pieces of the volume protocol's unit tests: keys, settings, one full exchange."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any

from rms.identity import NodeIdentity
from rms.volumes import (
    ClientCore,
    ClientLease,
    Granted,
    Offer,
    OfferTerms,
    ProviderCore,
    ProviderSettings,
    RequestTerms,
    StorageRequest,
)

NOW = 1_700_000_000.0
MIB = 1024**2
PROVIDER = NodeIdentity.from_seed(b"p" * 32)
CLIENT = NodeIdentity.from_seed(b"c" * 32)
EVE = NodeIdentity.from_seed(b"e" * 32)
LOCATION = b"L" * 16
NETWORK = b"N" * 16
PROVIDER_ADDRESS = IPv6Address("fd11:2233:4455::aaaa")
CLIENT_ADDRESS = IPv6Address("fd11:2233:4455::cccc")
WG_KEY = b"k" * 32


def settings(capacity: int = 256 * MIB, **changes: object) -> ProviderSettings:
    """A provider of `capacity` bytes in the shared test VPN."""
    fields: dict[str, object] = {
        "capacity": capacity,
        "location": LOCATION,
        "network": NETWORK,
        "addresses": (PROVIDER_ADDRESS,),
        "wg_port_count": 4,
        "lease_s": 60,
    }
    fields.update(changes)
    return ProviderSettings(**fields)  # type: ignore[arg-type]


def request(
    size: int = 64 * MIB, requester: NodeIdentity = CLIENT, request_id: bytes = b"r" * 16
) -> StorageRequest:
    """A storage request of one volume of `size` from `requester`."""
    terms = RequestTerms(8, b"l" * 16, b"n" * 16)
    return StorageRequest(requester.public_key, request_id, size, terms)


@dataclass
class Pair:
    """A provider and a client core with seeded randomness."""

    provider: ProviderCore
    client: ClientCore
    eve: ClientCore

    def offer(self, size: int = 64 * MIB, now: float = NOW, request_id: bytes = b"r" * 16) -> Offer:
        """The provider's offer to the client's request, as the client opens it."""
        terms = self.provider.consider(request(size, request_id=request_id), now)
        if not isinstance(terms, OfferTerms):
            raise AssertionError(f"no offer: {terms}")
        offer = Offer.from_answer(PROVIDER.public_key, [PROVIDER_ADDRESS.packed], terms.pack())
        if offer is None:
            raise AssertionError("the offer did not parse")
        return offer

    def claim(self, offer: Offer, now: float = NOW) -> tuple[bytes, bytes]:
        """(claim id, signed claim) from the client."""
        return self.client.claim(offer, WG_KEY, 51820, [CLIENT_ADDRESS], now)

    def lease(
        self, size: int = 64 * MIB, now: float = NOW, request_id: bytes = b"r" * 16
    ) -> ClientLease:
        """A whole exchange: request, offer, claim, grant; the client's lease."""
        _, data = self.claim(self.offer(size, now, request_id), now)
        outcome = self.provider.handle(data, now)
        if outcome.reply is None:
            raise AssertionError(outcome.event)
        event = self.client.receive(outcome.reply, PROVIDER.public_key, now)
        if not isinstance(event, Granted):
            raise AssertionError(f"not granted: {event}")
        return event.lease


def pair(capacity: int = 256 * MIB, seed: int = 1, **changes: object) -> Pair:
    """Fresh cores, seeded."""
    return Pair(
        ProviderCore(PROVIDER, settings(capacity, **changes), random.Random(seed)),
        ClientCore(CLIENT, random.Random(seed + 1)),
        ClientCore(EVE, random.Random(seed + 2)),
    )


class Wire(asyncio.DatagramTransport):
    """Catches what a GossipService sends, to hand it to another core by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.sent.append(bytes(data))

    def close(self) -> None:
        self.sent = []
