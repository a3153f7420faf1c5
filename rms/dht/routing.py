"""The Kademlia routing table, hardened as S/Kademlia suggests (docs/dht.md, "Routing table").

Buckets are indexed by the length of the prefix a contact's id shares with ours (Kademlia
section 2.2, XOR metric). Only contacts whose address a round trip proved are ever added
(the node calls `add` after a signed reply from the expected key at the address it asked).
A full bucket keeps its old contacts, which answer pings, over newcomers (Kademlia section
2.2: long-lived nodes are likelier to stay); newcomers wait in a replacement cache and only
take over after `max_failures` consecutive failures of an old contact. At most `per_subnet`
contacts of one origin share a bucket, so an attacker with one network cannot fill it
(eclipse resistance). An origin is the network a contact is on (`Origins`), not the address
it claims: docs/dht.md, "Origins".
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from rms.dht.types import Contact

__all__ = [
    "ID_BITS",
    "Bucket",
    "Origins",
    "RoutingTable",
    "bucket_index",
    "distance",
    "subnet_of",
]

ID_BITS = 256


def distance(a: bytes, b: bytes) -> int:
    """The Kademlia XOR distance between two 32-byte ids."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def bucket_index(own: bytes, other: bytes) -> int:
    """The bucket of `other`: the length of the prefix it shares with `own` (0..255)."""
    return ID_BITS - distance(own, other).bit_length()


@lru_cache(maxsize=16384)  # pure, and parsing addresses dominated bucket admission
def subnet_of(host: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) a host is in; a non-IP host is its own subnet."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network((ip, prefix), strict=False))


@lru_cache(maxsize=16384)
def canonical(host: str) -> str:
    """One spelling per IP address (`FD00:0::1` and `fd00::1` are one host)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


class Origins:
    """The network each address we hear from is on: what the per-origin limits count.

    The adapter tells the core the origin of the addresses it vouches for (in the daemon:
    every member of the node's VPNs, labelled with the network its guardian-signed roster
    lists); any other address is its own /24 or /48. A management address is in its VPN's
    /48, so an unknown member counts with its whole VPN: never more origins than we know.
    """

    def __init__(self) -> None:
        self._known: dict[str, str] = {}

    def set(self, origins: Mapping[str, str]) -> None:
        """Replace the known origins: host -> network label."""
        self._known = {canonical(host): label for host, label in origins.items()}

    def of(self, host: str) -> str:
        """The origin of a host we heard from (or sent to and got an answer from)."""
        label = self._known.get(canonical(host))
        return subnet_of(host) if label is None else "net:" + label

    def __len__(self) -> int:
        return len(self._known)


def contact_subnet(contact: Contact) -> str:
    """The origin a contact counts against: set when proven, else its first address's subnet."""
    if contact.origin:
        return contact.origin
    return subnet_of(contact.addresses[0].host) if contact.addresses else ""


@dataclass(slots=True)
class Bucket:
    """Up to k contacts, least recently seen first, and a replacement cache."""

    contacts: OrderedDict[bytes, Contact] = field(default_factory=OrderedDict)
    replacements: OrderedDict[bytes, Contact] = field(default_factory=OrderedDict)
    last_activity: float = 0.0


class RoutingTable:
    """The contacts of one node, by XOR distance from its id."""

    def __init__(
        self, own_id: bytes, k: int, replacements: int, per_subnet: int, max_failures: int,
        *, per_relay: int = 8,
    ) -> None:  # fmt: skip
        self.own_id = own_id
        self.k = k
        self.replacement_size = replacements
        self.per_subnet = per_subnet
        self.per_relay = per_relay  # contacts proven through one first relay ("via:" origins)
        self.max_failures = max_failures
        self.buckets = [Bucket() for _ in range(ID_BITS)]
        self.refused_subnet = 0

    def __len__(self) -> int:
        return sum(len(b.contacts) for b in self.buckets)

    def get(self, key_id: bytes) -> Contact | None:
        """The contact with this node id, if the table holds it."""
        if key_id == self.own_id:
            return None
        return self.buckets[bucket_index(self.own_id, key_id)].contacts.get(key_id)

    def has_room(self, node_id: bytes) -> bool:
        """Whether the bucket this id falls in has a free slot."""
        if node_id == self.own_id:
            return False
        return len(self.buckets[bucket_index(self.own_id, node_id)].contacts) < self.k

    def add(self, contact: Contact, now: float, origin: str = "") -> Contact | None:
        """Add or refresh a contact proven via `origin`; returns the oldest to ping if full."""
        if contact.node_id == self.own_id:
            return None
        bucket = self.buckets[bucket_index(self.own_id, contact.node_id)]
        bucket.last_activity = now
        old = bucket.contacts.get(contact.node_id)
        if old is not None:
            # The route a round trip just proved wins unless it is longer than the one we
            # had, or counts against another origin that has no room left in the bucket.
            adopt = len(contact.route) <= len(old.route)
            moved = bool(origin) and origin != old.origin
            if adopt and moved and not self._subnet_ok(bucket, origin, skip=old.node_id):
                adopt = False
            if adopt:
                old.origin, old.route = origin or old.origin, contact.route
            _refresh(old, contact, now)
            bucket.contacts.move_to_end(contact.node_id)
            return None
        contact.origin = origin or contact.origin
        if not self._subnet_ok(bucket, contact_subnet(contact)):
            self.refused_subnet += 1
            return None
        contact.first_seen = contact.first_seen or now
        contact.last_seen = now
        if len(bucket.contacts) < self.k:
            bucket.contacts[contact.node_id] = contact
            return None
        self._remember_replacement(bucket, contact)
        return next(iter(bucket.contacts.values()))

    def failed(self, node_id: bytes) -> bool:
        """Count a failed RPC; returns True if the contact was evicted."""
        bucket = (
            self.buckets[bucket_index(self.own_id, node_id)] if node_id != self.own_id else None
        )
        contact = bucket.contacts.get(node_id) if bucket else None
        if bucket is None or contact is None:
            return False
        contact.failures += 1
        if contact.failures < self.max_failures:
            return False
        del bucket.contacts[node_id]
        self._promote(bucket)
        return True

    def closest(self, target: bytes, count: int) -> list[Contact]:
        """The `count` contacts closest to `target` by XOR distance."""
        start = bucket_index(self.own_id, target) if target != self.own_id else ID_BITS - 1
        found: list[Contact] = []
        # Buckets at or beyond the target's index, then nearer ones: enough to sort exactly.
        order = [*range(start, ID_BITS), *range(start - 1, -1, -1)]
        for index in order:
            found.extend(self.buckets[index].contacts.values())
            if len(found) >= count and index < start:
                break
        point = int.from_bytes(target, "big")
        found.sort(key=lambda c: int.from_bytes(c.node_id, "big") ^ point)
        return found[:count]

    def near_radius(self) -> int | None:
        """The distance to our k-th closest contact: about the span of k nodes in the keyspace.

        A node further than this from a key is unlikely to be among the key's k closest
        (where records live); None while we know fewer than k contacts.
        """
        closest = self.closest(self.own_id, self.k)
        return distance(closest[-1].node_id, self.own_id) if len(closest) == self.k else None

    def all_contacts(self) -> list[Contact]:
        """Every contact in the table."""
        return [c for b in self.buckets for c in b.contacts.values()]

    def idle_buckets(self, now: float, idle_s: float) -> list[int]:
        """Indexes of buckets not touched for `idle_s`, up to the deepest non-empty one."""
        deepest = max((i for i, b in enumerate(self.buckets) if b.contacts), default=-1)
        return [i for i in range(deepest + 1) if now - self.buckets[i].last_activity >= idle_s]

    def touch(self, index: int, now: float) -> None:
        """Mark a bucket as refreshed."""
        self.buckets[index].last_activity = now

    def _subnet_ok(self, bucket: Bucket, origin: str, skip: bytes = b"") -> bool:
        same = sum(
            1 for c in bucket.contacts.values() if c.node_id != skip and contact_subnet(c) == origin
        )
        return same < (self.per_relay if origin.startswith("via:") else self.per_subnet)

    def _remember_replacement(self, bucket: Bucket, contact: Contact) -> None:
        bucket.replacements[contact.node_id] = contact
        bucket.replacements.move_to_end(contact.node_id)
        while len(bucket.replacements) > self.replacement_size:
            bucket.replacements.popitem(last=False)

    def _promote(self, bucket: Bucket) -> None:
        # The most recently seen replacement is the likeliest to be alive.
        while bucket.replacements:
            _, candidate = bucket.replacements.popitem(last=True)
            if self._subnet_ok(bucket, contact_subnet(candidate)):
                candidate.failures = 0
                bucket.contacts[candidate.node_id] = candidate
                return


def _refresh(old: Contact, new: Contact, now: float) -> None:
    old.last_seen = now
    old.failures = 0
    old.addresses = new.addresses or old.addresses
