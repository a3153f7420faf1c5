"""The cloud-wide DHT: an S/Kademlia-hardened Kademlia over the management VPNs (docs/dht.md).

`DhtNode` is the sans-IO core; `rms.dht.adapter` runs it on a UDP socket; `rms.dht.sim`
runs thousands of them in one process.
"""

from rms.dht.node import DhtNode
from rms.dht.records import (
    Record,
    RecordError,
    parse_record,
    peer_key,
    provider_key,
    sign_record,
    vpn_key,
)
from rms.dht.types import Address, Contact, DhtConfig, LookupDone, LookupResult, Output, Send

__all__ = [
    "Address",
    "Contact",
    "DhtConfig",
    "DhtNode",
    "LookupDone",
    "LookupResult",
    "Output",
    "Record",
    "RecordError",
    "Send",
    "parse_record",
    "peer_key",
    "provider_key",
    "sign_record",
    "vpn_key",
]
