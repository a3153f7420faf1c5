"""Building and reading `dht.*` bodies: contacts, reply budgets, rate limits (sans-IO)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rms.dht.types import Address, Contact
from rms.identity import node_id_of
from rms.wire.messages import dht as msgs
from rms.wire.registry import MessageType

__all__ = [
    "ANSWERS",
    "RateLimiter",
    "contacts_of",
    "fit_contacts",
]

# The response type each request type expects; anything else from the asked node is dropped.
ANSWERS: dict[MessageType, MessageType] = {
    msgs.PING: msgs.PONG,
    msgs.FIND_NODE: msgs.NODES,
    msgs.FIND_VALUE: msgs.VALUE,
    msgs.FIND_PROVIDERS: msgs.PROVIDERS,
    msgs.STORE: msgs.STORED,
}
ENVELOPE_OVERHEAD = 160  # signature, header and rid of a reply, rounded up
CONTACT_BYTES = 40  # a contact's key and maps, without its addresses
ADDRESS_BYTES = 30  # one address map, without its host


def address_of(item: object) -> Address | None:
    """An Address from a decoded `dht.*` address map (already schema-checked)."""
    if not isinstance(item, Mapping):
        return None
    vpn, host, port = item.get("v"), item.get("h"), item.get("p")
    if isinstance(vpn, bytes) and isinstance(host, str) and isinstance(port, int):
        return Address(vpn, host, port)
    return None


def addresses_of(items: object) -> tuple[Address, ...]:
    """The Addresses of a decoded address list."""
    if not isinstance(items, tuple):
        return ()
    return tuple(a for a in (address_of(i) for i in items) if a is not None)


def contacts_of(items: object) -> list[tuple[bytes, tuple[Address, ...]]]:
    """(public key, addresses) pairs from a decoded contact list."""
    if not isinstance(items, tuple):
        return []
    found = []
    for item in items:
        if isinstance(item, Mapping) and isinstance(item.get("k"), bytes):
            key = item["k"]
            if isinstance(key, bytes):
                found.append((key, addresses_of(item.get("a"))))
    return found


def contact_size(contact: Contact) -> int:
    """An upper bound of the bytes a contact takes in a reply."""
    return CONTACT_BYTES + sum(ADDRESS_BYTES + len(a.host) for a in contact.addresses)


def fit_contacts(contacts: Sequence[Contact], budget: int) -> list[dict[str, object]]:
    """The closest contacts, in order, that fit `budget` bytes of a reply."""
    chosen: list[dict[str, object]] = []
    used = ENVELOPE_OVERHEAD
    for contact in contacts[: msgs.MAX_CONTACTS]:
        size = contact_size(contact)
        if used + size > budget:
            break
        used += size
        chosen.append(contact.wire())
    return chosen


def new_contact(key: bytes, addresses: tuple[Address, ...]) -> Contact:
    """An unproven contact as a peer described it."""
    return Contact(key, node_id_of(key), addresses)


@dataclass(slots=True)
class _Tokens:
    level: float
    stamp: float


class RateLimiter:
    """Token buckets per source, bounded: the least recently used source is forgotten."""

    def __init__(self, rate: float, burst: float, capacity: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self.capacity = capacity
        self._buckets: OrderedDict[object, _Tokens] = OrderedDict()
        self.refused = 0

    def allow(self, source: object, now: float) -> bool:
        """Take one token for `source` if it has one."""
        tokens = self._buckets.pop(source, None) or _Tokens(self.burst, now)
        # A clock that stepped back refills nothing (and takes nothing away).
        tokens.level = min(self.burst, tokens.level + max(0.0, now - tokens.stamp) * self.rate)
        tokens.stamp = now
        self._buckets[source] = tokens
        if len(self._buckets) > self.capacity:
            self._buckets.popitem(last=False)
        if tokens.level < 1:
            self.refused += 1
            return False
        tokens.level -= 1
        return True

    def __len__(self) -> int:
        return len(self._buckets)
