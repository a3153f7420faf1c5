"""The `volumes.*` message family: claiming, renewing and releasing a remote volume.

The offer side travels in the broadcast (docs/broadcast.md): a `gossip.request` of kind
`storage` whose `terms` are `REQUEST_TERMS`, and a boxed `gossip.answer` whose offer `terms`
are `OFFER_TERMS`. Everything after the offer goes point to point between the consumer (CFS)
and the provider over a management VPN, as signed envelopes in length-prefixed frames
(rms.net.framing): claim -> grant | refused, renew -> renewed | refused, release ->
released | refused. The grant's confidential part (CHAP credentials, the nested WireGuard
keys and addresses) is a NaCl box to the client, `GRANT_SECRETS` inside. docs/volumes.md.
"""

from __future__ import annotations

from rms.wire.messages.gossip import MAX_TERMS
from rms.wire.registry import MessageType
from rms.wire.schema import Bytes, Int, List, Map, Str

__all__ = [
    "CLAIM",
    "GRANT",
    "GRANT_SECRETS",
    "ID_SIZE",
    "MAX_ENDPOINTS",
    "MAX_GRANT_BOX",
    "MAX_TERMS",
    "OFFER_TERMS",
    "REFUSED",
    "RELEASE",
    "RELEASED",
    "RENEW",
    "RENEWED",
    "REQUEST_TERMS",
    "TYPES",
]

ID_SIZE = 16  # claim, offer, request, renewal and volume ids
MAX_ENDPOINTS = 4  # management addresses: one per VPN, and a node is in at most 4
MAX_GRANT_BOX = 2048
MAX_SIZE = 2**62  # bytes of one volume
MAX_COUNT = 64  # volumes asked for in one request

_ID = Bytes(max_len=ID_SIZE, min_len=ID_SIZE)
_UUID = Bytes(max_len=16, min_len=16)
_IPV6 = Bytes(max_len=16, min_len=16)
_KEY = Bytes(max_len=32, min_len=32)
_PORT = Int(1, 65535)
_SIZE = Int(1, MAX_SIZE)
_TIME_MS = Int(0, 2**63 - 1)

# Inside the `terms` of a storage `gossip.request` (packed msgpack, at most MAX_TERMS).
REQUEST_TERMS = Map(
    {
        "count": Int(1, MAX_COUNT),  # volumes the requester wants, each of `amount` bytes
        "location": _UUID,  # the requester's geographic location UUID
        "network": _UUID,  # the requester's network endpoint UUID
    }
)
# Inside the `terms` of a storage offer (in the answer's box; packed, at most MAX_TERMS).
OFFER_TERMS = Map(
    {
        "offer_id": _ID,
        "size": _SIZE,  # bytes of each volume offered
        "count": Int(1, MAX_COUNT),  # volumes this provider would grant for the request
        "location": _UUID,
        "network": _UUID,
        "port": _PORT,  # the provider's volume protocol port on its management addresses
        "capacity": Int(0, MAX_SIZE),  # bytes the provider contributes in all
        "free": Int(0, MAX_SIZE),  # bytes not leased when the offer was made
        "lease_s": Int(1, 86400),  # how long a grant lasts between renewals
        "expires_ms": _TIME_MS,  # claim before this (provider's clock)
        "price": Int(0, 2**32),  # hint: credits per GiB and day, 0 until accounting lands
        "reliability": Int(0, 1000),  # hint: the provider's own uptime, per mille
    }
)

CLAIM = MessageType(
    "volumes.claim",
    Map(
        {
            "claim_id": _ID,  # the client's id; a retry sends the same one
            "offer_id": _ID,
            "size": _SIZE,
            "wg_key": _KEY,  # the client's nested-VPN WireGuard public key
            "wg_port": _PORT,  # where the client's nested interface listens
            "endpoints": List(_IPV6, MAX_ENDPOINTS),  # the client's management addresses
        }
    ),
)
GRANT = MessageType(
    "volumes.grant",
    Map(
        {
            "claim_id": _ID,
            "volume_id": _ID,
            "client": Bytes(max_len=32, min_len=32),  # node id the lease is for
            "size": _SIZE,
            "expires_ms": _TIME_MS,
            "box": Bytes(max_len=MAX_GRANT_BOX, min_len=40),
        }
    ),
)
# Not a message type: the plaintext of a grant's box.
GRANT_SECRETS = Map(
    {
        "iqn": Str(max_len=223, min_len=1),
        "portal": _IPV6,  # the provider's address inside the nested VPN
        "portal_port": _PORT,
        "client_address": _IPV6,  # the client's address inside the nested VPN
        "prefix_len": Int(64, 128),
        "chap_user": Str(max_len=64, min_len=1),
        "chap_secret": Str(max_len=64, min_len=12),
        "wg_key": _KEY,  # the provider's nested-VPN WireGuard public key
        "wg_psk": _KEY,  # WireGuard preshared key for this volume's tunnel
        "endpoint": _IPV6,  # the provider's management address for the tunnel
        "endpoint_port": _PORT,
    }
)
RENEW = MessageType("volumes.renew", Map({"volume_id": _ID, "renewal_id": _ID}))
RENEWED = MessageType(
    "volumes.renewed", Map({"volume_id": _ID, "renewal_id": _ID, "expires_ms": _TIME_MS})
)
RELEASE = MessageType("volumes.release", Map({"volume_id": _ID}))
RELEASED = MessageType("volumes.released", Map({"volume_id": _ID}))
REFUSED = MessageType(
    "volumes.refused",
    Map(
        {
            "ref": _ID,  # the claim id, or the volume id of a renew or release
            "reason": Str(max_len=32, min_len=1),
            "detail": Str(max_len=200),
        }
    ),
)
TYPES: tuple[MessageType, ...] = (CLAIM, GRANT, RENEW, RENEWED, RELEASE, RELEASED, REFUSED)
