"""The per-origin limits count a contact's network, not the /48 of its management address.

In the daemon every member of a VPN has an address in the VPN's /48; the roster says which
network each member is on, and that is what the bucket limit, the request rate and the store
quota count (docs/dht.md, "Origins").
"""

from __future__ import annotations

import random
import uuid

from rms.dht.node import DhtNode
from rms.dht.records import PEER, peer_fields, sign_record
from rms.dht.routing import Origins, bucket_index
from rms.dht.service import VpnView, member_dht_address
from rms.dht.store import StoreOutcome
from rms.dht.types import Address, DhtConfig, Send
from rms.identity import NodeIdentity
from rms.wire import encode
from rms.wire.messages import dht as msgs
from tests.unit.dht_support import BITS, NOW, VPN, Net, identity
from tests.unit.test_dht_service import VPN_A, FakeNet, Node, mesh, start

PREFIX = "fd00:1:2::"  # one VPN's /48


def node_at(index: int, host: str, **tweaks: object) -> DhtNode:
    """Node `index` listening at `host` on VPN."""
    config = DhtConfig(addresses=(Address(VPN, host, 7947),), puzzle_bits=BITS, **tweaks)  # type: ignore[arg-type]
    return DhtNode(identity(index), config, random.Random(index), NOW)


def in_first_bucket(own: DhtNode, count: int, start: int = 100) -> list[int]:
    """Seeds of `count` identities that fall in `own`'s bucket 0 (half the id space)."""
    found: list[int] = []
    seed = start
    while len(found) < count:
        if bucket_index(own.node_id, identity(seed).node_id) == 0:
            found.append(seed)
        seed += 1
    return found


def join_through(own: DhtNode, others: list[DhtNode]) -> None:
    net = Net([own, *others])
    net.run(own, own.bootstrap([(o.key, o.config.addresses) for o in others], NOW))


def test_origins_label_the_hosts_they_know_and_fall_back_to_the_subnet() -> None:
    origins = Origins()
    origins.set({PREFIX + "a": "net-a", "10.0.0.7": "net-b"})
    assert origins.of(PREFIX + "a") == "net:net-a"
    assert origins.of("FD00:1:2:0::A") == "net:net-a"  # one host, one origin, any spelling
    assert origins.of("10.0.0.7") == "net:net-b"
    assert origins.of(PREFIX + "b") == "fd00:1:2::/48"  # unknown: its whole /48
    assert origins.of("10.0.0.8") == "10.0.0.0/24"
    assert len(origins) == 2


def _bucket_zero(own: DhtNode, others: list[DhtNode]) -> int:
    keys = {o.key for o in others}
    return sum(1 for c in own.table.buckets[0].contacts.values() if c.key in keys)


def test_members_of_one_vpn_on_different_networks_fill_a_bucket_beyond_two() -> None:
    own = node_at(1, PREFIX + "1")
    seeds = in_first_bucket(own, 4)
    others = [node_at(s, f"{PREFIX}{s:x}") for s in seeds]
    own.set_origins({o.config.addresses[0].host: f"net-{i}" for i, o in enumerate(others)})
    join_through(own, others)
    assert _bucket_zero(own, others) == 4
    labels = {c.origin for c in own.table.buckets[0].contacts.values()}
    assert labels >= {f"net:net-{i}" for i in range(4)}


def test_without_their_networks_one_vpns_members_are_two_per_bucket() -> None:
    own = node_at(1, PREFIX + "1")
    others = [node_at(s, f"{PREFIX}{s:x}") for s in in_first_bucket(own, 4)]
    join_through(own, others)
    assert _bucket_zero(own, others) == 2  # unknown: they count as their VPN's /48


def test_hosts_in_different_subnets_on_one_network_count_as_one_origin() -> None:
    own = node_at(1, "10.200.0.1")
    others = [node_at(s, f"10.{s}.0.1") for s in in_first_bucket(own, 4)]
    own.set_origins({o.config.addresses[0].host: "one-network" for o in others})
    join_through(own, others)
    assert _bucket_zero(own, others) == 2


def _ping(sender: NodeIdentity, host: str, rid: int, now: float) -> bytes:
    body = {"rid": rid.to_bytes(16, "big"), "from": [{"v": VPN, "h": host, "p": 7947}]}
    return encode(sender, msgs.PING, body, now)


def _flood(own: DhtNode, host: str, count: int, now: float) -> int:
    """How many of `count` pings from `host` the node served (was not rate-limiting)."""
    before = own.counters["rate_limited"]
    for i in range(count):
        own.datagram_received(_ping(identity(5), host, i, now), (host, 7947), now)
    return count - (own.counters["rate_limited"] - before)


def test_the_request_rate_is_per_network_not_per_vpn() -> None:
    own = node_at(1, PREFIX + "1")
    own.set_origins({PREFIX + "a": "net-a", PREFIX + "b": "net-b"})
    assert _flood(own, PREFIX + "a", 300, NOW) <= 100  # net-a spent its burst
    assert _flood(own, PREFIX + "b", 1, NOW) == 1  # net-b, same /48, has its own
    shared = node_at(1, PREFIX + "1")  # no networks known: one VPN, one budget
    _flood(shared, PREFIX + "a", 300, NOW)
    assert _flood(shared, PREFIX + "b", 1, NOW) == 0


def _store(sender: int, record: bytes, host: str, now: float, own: DhtNode) -> bool:
    body = {"rid": bytes(16), "from": [{"v": VPN, "h": host, "p": 7947}], "record": record}
    data = encode(identity(sender), msgs.STORE, body, now)
    out = own.datagram_received(data, (host, 7947), now)
    return any(isinstance(o, Send) and b"\xa2ok\xc3" in o.data for o in out)


def _peer_record(index: int) -> bytes:
    fields = peer_fields((Address(VPN, f"10.9.{index}.1", 7947),))
    return sign_record(identity(index), PEER, 1, NOW + 3600, fields)


def test_the_store_quota_is_per_network() -> None:
    own = node_at(1, PREFIX + "1", per_source=2)
    own.set_origins({PREFIX + "a": "net-a", PREFIX + "b": "net-b"})
    stored = [_store(30 + i, _peer_record(30 + i), PREFIX + "a", NOW, own) for i in range(3)]
    assert stored == [True, True, False]
    assert _store(40, _peer_record(40), PREFIX + "b", NOW, own)


def _relayed_store(own: DhtNode, origin: DhtNode, relay: int, host: str, rid: int) -> None:
    inner_body = {"rid": bytes(16), "from": [], "record": _peer_record(rid)}
    inner = encode(origin.identity, msgs.STORE, inner_body, NOW)
    boxed = origin.boxes.seal(own.key, inner)
    assert boxed is not None
    body = {
        "rid": rid.to_bytes(16, "big"), "from": [{"v": VPN, "h": host, "p": 7947}],
        "origin": origin.key, "path": [], "inner": boxed,
    }  # fmt: skip
    own.datagram_received(encode(identity(relay), msgs.RELAY, body, NOW), (host, 7947), NOW)


def test_a_relayed_store_counts_against_the_relay_that_brought_it() -> None:
    own = node_at(1, PREFIX + "1", per_source=2)
    own.set_origins({PREFIX + "a": "net-a"})
    origins = [node_at(60 + i, f"fd00:9:{i}::1") for i in range(3)]
    for i, origin in enumerate(origins):  # three different origin keys, one relay
        _relayed_store(own, origin, 7, PREFIX + "a", 70 + i)
    assert own.store.count == 2  # the relay's network's quota, not one per origin key
    assert own.store.outcomes[StoreOutcome.SOURCE_QUOTA] == 1


def test_relay_requests_are_rate_limited_per_network_too() -> None:
    own = node_at(1, PREFIX + "1")
    own.set_origins({PREFIX + "a": "net-a"})
    origin = node_at(61, "fd00:9:1::1")
    for i in range(300):
        _relayed_store(own, origin, 7, PREFIX + "a", 1000 + i)
    assert own.counters["rate_limited"] >= 190


async def test_the_service_gives_the_core_each_members_network_from_the_roster() -> None:
    net = FakeNet()
    a, b, c = (NetworkNode(net, i) for i in (41, 42, 43))
    mesh([a, b, c], VPN_A)
    a.networks = {b.identity.public_key: uuid.UUID(int=1)}  # c is in no roster entry we read
    await start([a, b, c])
    origins = a.service.core.origins
    assert origins.of(b.address(VPN_A)) == f"net:{uuid.UUID(int=1)}"
    assert origins.of(c.address(VPN_A)).endswith("/48")
    address = member_dht_address(VPN_A, b.identity.public_key)
    assert address.host == b.address(VPN_A)
    assert a.service.status()["known_origins"] == 1
    for node in (a, b, c):
        node.service.close()


class NetworkNode(Node):
    """A service whose VPN views carry the members' networks."""

    def __init__(self, net: FakeNet, seed: int) -> None:
        super().__init__(net, seed)
        self.networks: dict[bytes, uuid.UUID] = {}

    def views(self) -> list[VpnView]:
        return [
            VpnView(v, self.address(v), tuple(keys), self.networks) for v, keys in self.vpns.items()
        ]
