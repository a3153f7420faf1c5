"""The DHT core's plain data: addresses, contacts, configuration, outputs and events."""

from __future__ import annotations

from dataclasses import dataclass, field

from rms.policy import DEFAULT, Policy

__all__ = [
    "Address",
    "Contact",
    "DhtConfig",
    "LookupDone",
    "LookupResult",
    "Output",
    "Send",
    "SockAddr",
]

SockAddr = tuple[str, int]  # opaque (host, port) for the core; the adapter gives it meaning


@dataclass(frozen=True, slots=True)
class Address:
    """Where a node listens on one management VPN."""

    vpn: bytes  # the VPN's 16-byte UUID
    host: str
    port: int

    @property
    def sock(self) -> SockAddr:
        """The (host, port) to send to."""
        return (self.host, self.port)

    def wire(self) -> dict[str, object]:
        """The `dht.*` address map."""
        return {"v": self.vpn, "h": self.host, "p": self.port}


@dataclass(slots=True)
class Contact:
    """A node we know: its key, its addresses and how we reach it.

    `route` lists the relays to go through, first hop first; empty means direct. `origin`
    is the network it counts against for the per-origin limits (`rms.dht.routing.Origins`),
    set when a round trip proves it.
    """

    key: bytes
    node_id: bytes
    addresses: tuple[Address, ...]
    route: tuple[Contact, ...] = ()
    first_seen: float = 0.0
    last_seen: float = 0.0
    failures: int = 0
    origin: str = ""

    def wire(self) -> dict[str, object]:
        """The `dht.*` contact map."""
        return {"k": self.key, "a": [a.wire() for a in self.addresses]}


@dataclass(frozen=True, slots=True)
class DhtConfig:
    """Tunables of one node; cloud-wide rules come from the policy."""

    addresses: tuple[Address, ...]  # ours, one per management VPN
    policy: Policy = DEFAULT
    k: int = 20  # bucket size and replication factor (Kademlia section 2.2)
    alpha: int = 3  # parallel requests per lookup path (Kademlia section 2.3)
    paths: int = 2  # disjoint lookup paths d (S/Kademlia section 4.4)
    near_span: float = 2.0  # x our k-th neighbour's distance: "near" a key; 0: always alpha
    request_timeout_s: float = 1.0
    # A value lookup that got a copy waits for the requests already in flight, until `quorum`
    # copies agree on the newest seq or for at most `collect_span` x that copy's round trip;
    # then it returns the newest copy. collect_span 0 or quorum 1: the first copy wins.
    collect_span: float = 1.0
    quorum: int = 2
    lookup_deadline_s: float = 10.0
    max_failures: int = 3  # consecutive failed RPCs before a contact is evicted
    replacement_cache: int = 10  # per bucket
    per_subnet: int = 2  # contacts of one origin (network) per bucket
    # contacts proven through one first relay per bucket: 2 for each VPN it can forward into
    # (a node is in at most 4); one neighbour, however many keys behind it, gets no more
    per_relay: int = 8
    refresh_s: float = 3600.0  # idle buckets are refreshed (Kademlia section 2.3)
    join_refresh_below: int = 1  # on join, refresh the far buckets holding fewer contacts
    max_datagram: int = 1280  # IPv6 minimum MTU: datagrams travel inside WireGuard
    amplification: int = 3  # reply <= 3 x request until the asker's address is proven
    max_records: int = 4096  # global store limit
    # records per publisher key: a peer record, a provider record, and the audit reports of a
    # CFS about its 8 providers, their replacements and a spare (docs/accounting.md)
    per_publisher: int = 24
    per_source: int = 64  # records stored per source origin
    per_key: int = 32  # records under one multi-publisher key (providers, VPN records)
    request_rate: float = 50.0  # requests per second per source origin
    request_burst: float = 100.0
    relay_rate: float = 10.0  # relayed requests per second per origin
    max_pending: int = 1024  # outstanding requests of ours
    max_relays: int = 2  # relays on a path: origin -> r1 -> r2 -> target
    puzzle_bits: int = field(default=-1)  # -1: take policy.dht_puzzle_bits

    @property
    def vpns(self) -> frozenset[bytes]:
        """The VPNs we are in, so the addresses we can send to directly."""
        return frozenset(a.vpn for a in self.addresses)

    @property
    def bits(self) -> int:
        """The puzzle difficulty in force."""
        return self.policy.dht_puzzle_bits if self.puzzle_bits < 0 else self.puzzle_bits


@dataclass(frozen=True, slots=True)
class Send:
    """Send `data` to `addr`."""

    addr: SockAddr
    data: bytes


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What an operation found: a record, provider records, or the closest contacts."""

    key: bytes
    ok: bool
    record: bytes | None = None
    records: tuple[bytes, ...] = ()
    closest: tuple[bytes, ...] = ()  # keys of the closest nodes that answered
    stored: int = 0  # puts: how many nodes accepted the record
    rpcs: int = 0  # requests sent for this operation
    copies: int = 0  # value lookups: valid copies of the record the asked nodes returned
    repaired: int = 0  # value lookups: nodes that returned an older copy, sent the newest


@dataclass(frozen=True, slots=True)
class LookupDone:
    """Operation `op_id` finished."""

    op_id: int
    result: LookupResult


Output = Send | LookupDone
