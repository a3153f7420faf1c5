"""Discovery: the signed VPN record, the feed parser (both sans-IO), and the HTTPS client.

Build a record with `found` (a new VPN), `redelegate` (the founder names new guardians) and
`sign_record`; check peer bytes with `verify_record`; read a feed with `parse_feed`. The
client that fetches feeds and publishes records is `rms.discovery.client.DiscoveryClient`.
docs/discovery.md is the reference.
"""

from rms.discovery.feed import (
    FeedReason,
    FeedRejected,
    ItemReason,
    ParsedFeed,
    RejectedItem,
    parse_feed,
)
from rms.discovery.fields import RecordReason
from rms.discovery.record import (
    DEFAULT_MAX_SKEW_S,
    MAX_RECORD_BYTES,
    Charter,
    Delegation,
    RecordBody,
    RecordError,
    Rejected,
    VpnRecord,
    delegate,
    found,
    latest,
    rank,
    redelegate,
    sign_record,
    supersedes,
    verify_record,
    vpn_id_of,
)

__all__ = [
    "DEFAULT_MAX_SKEW_S",
    "MAX_RECORD_BYTES",
    "Charter",
    "Delegation",
    "FeedReason",
    "FeedRejected",
    "ItemReason",
    "ParsedFeed",
    "RecordBody",
    "RecordError",
    "RecordReason",
    "RejectedItem",
    "Rejected",
    "VpnRecord",
    "delegate",
    "found",
    "latest",
    "parse_feed",
    "rank",
    "redelegate",
    "sign_record",
    "supersedes",
    "verify_record",
    "vpn_id_of",
]
