"""The `dht.*` message family: the Kademlia RPCs of the cloud-wide DHT (docs/dht.md).

Every request carries a 16-byte request id `rid` and the sender's own addresses `from`
(one per management VPN, so the receiver learns how to call back); every response echoes
`rid`. The asker accepts a response only from the key it asked, at the address it asked.
`pad` lets an asker whose address the answerer has not proven yet buy a larger reply: a reply
is at most 3x its request until then (anti-amplification).

Contacts and addresses use one-letter keys: a full contact list must fit a 1280-byte datagram.
"""

from __future__ import annotations

from rms.wire.registry import MessageType
from rms.wire.schema import Bool, Bytes, Int, List, Map, Str

__all__ = [
    "ADDRESS",
    "CONTACT",
    "FIND_NODE",
    "FIND_PROVIDERS",
    "FIND_VALUE",
    "KEY_SIZE",
    "MAX_ADDRESSES",
    "MAX_CONTACTS",
    "MAX_HOPS",
    "MAX_RECORD",
    "NODES",
    "PING",
    "PONG",
    "PROVIDERS",
    "RELAY",
    "RELAYED",
    "RID_SIZE",
    "STORE",
    "STORED",
    "TYPES",
    "VALUE",
]

KEY_SIZE = 32  # node ids, record keys, public keys: SHA-256 / ed25519 sizes
RID_SIZE = 16
VPN_ID_SIZE = 16  # a management VPN's UUID
MAX_ADDRESSES = 4  # a node is in at most 4 management VPNs (policy.vpn_max)
MAX_CONTACTS = 20  # k: never more contacts in one reply
MAX_RECORD = 1024  # one signed record, encoded (rms.dht.records caps it at 600)
MAX_PROVIDERS = 4  # provider records per reply (4 KiB would not fit 1280 bytes; see pad)
MAX_HOPS = 3  # relay path length
MAX_PAD = 1024

ADDRESS = Map({"v": Bytes(VPN_ID_SIZE, VPN_ID_SIZE), "h": Str(64, 1), "p": Int(1, 65535)})
CONTACT = Map({"k": Bytes(KEY_SIZE, KEY_SIZE), "a": List(ADDRESS, MAX_ADDRESSES)})
_RID = Bytes(RID_SIZE, RID_SIZE)
_KEY = Bytes(KEY_SIZE, KEY_SIZE)
_REQUEST = {"rid": _RID, "from": List(ADDRESS, MAX_ADDRESSES)}
_PAD = {"pad": Bytes(MAX_PAD)}
_CONTACTS = List(CONTACT, MAX_CONTACTS)

PING = MessageType("dht.ping", Map(_REQUEST, _PAD))
PONG = MessageType("dht.pong", Map({"rid": _RID}))
FIND_NODE = MessageType("dht.find_node", Map({**_REQUEST, "target": _KEY}, _PAD))
NODES = MessageType("dht.nodes", Map({"rid": _RID, "contacts": _CONTACTS}))
FIND_VALUE = MessageType("dht.find_value", Map({**_REQUEST, "key": _KEY}, _PAD))
# A value reply holds the record if the answerer has it, else the closest contacts.
VALUE = MessageType(
    "dht.value", Map({"rid": _RID, "contacts": _CONTACTS}, {"record": Bytes(MAX_RECORD)})
)
FIND_PROVIDERS = MessageType("dht.find_providers", Map({**_REQUEST, "key": _KEY}, _PAD))
PROVIDERS = MessageType(
    "dht.providers",
    Map({"rid": _RID, "contacts": _CONTACTS, "records": List(Bytes(MAX_RECORD), MAX_PROVIDERS)}),
)
STORE = MessageType("dht.store", Map({**_REQUEST, "record": Bytes(MAX_RECORD)}, _PAD))
STORED = MessageType("dht.stored", Map({"rid": _RID, "ok": Bool()}))
# Cross-VPN relay (docs/dht.md, "Cloud-wide reach"): `path` lists the remaining hops after
# the receiver, the last being the target; `inner` is the origin's signed request, boxed to
# the target. The reply `dht.relayed` carries the target's boxed signed reply untouched.
HOP = Map({"k": _KEY, "a": ADDRESS})
RELAY = MessageType(
    "dht.relay",
    Map(
        {
            **_REQUEST,
            "origin": _KEY,
            "path": List(HOP, MAX_HOPS),
            "inner": Bytes(1100),
        }
    ),
)
RELAYED = MessageType("dht.relayed", Map({"rid": _RID, "inner": Bytes(1100)}))

TYPES: tuple[MessageType, ...] = (
    PING,
    PONG,
    FIND_NODE,
    NODES,
    FIND_VALUE,
    VALUE,
    FIND_PROVIDERS,
    PROVIDERS,
    STORE,
    STORED,
    RELAY,
    RELAYED,
)
