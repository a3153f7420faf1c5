"""Leases as records the provider keeps on disk, so a restart does not lose volumes (sans-IO).

The acceptance of issue 5 kills providers and expects the pool to resume "when the volumes
come back": a provider that forgot its leases on restart would have to wipe every volume
and the data would be gone. So the provider writes its leases after every change (grant,
renewal, end) and restores the unexpired ones when it starts (docs/volumes.md, "Restarts").

The file is the provider's own (root only, 0600), but it is still input: unpacking is
capped, each record is checked against `LEASE_RECORD`, and a record that does not conform
is dropped (its volume file is then wiped as a leftover) — never an exception. The file
holds the leases' secrets (the CHAP secret, the nested-VPN private key and PSK), exactly as
the running provider does in memory; it must stay as private as the node key.
"""

from __future__ import annotations

from ipaddress import IPv6Address
from typing import Any

import msgpack

from rms.volumes.grants import GrantSecrets
from rms.volumes.leases import Lease
from rms.wg.keys import WgPrivateKey
from rms.wire.messages.volumes import GRANT_SECRETS, ID_SIZE, MAX_GRANT_BOX
from rms.wire.schema import Bytes, Int, Map, SchemaViolation

__all__ = ["FORMAT", "MAX_LEASES", "LEASE_RECORD", "pack_leases", "unpack_leases"]

FORMAT = 1
MAX_LEASES = 4096
_ID = Bytes(max_len=ID_SIZE, min_len=ID_SIZE)
_KEY = Bytes(max_len=32, min_len=32)
_PORT = Int(1, 65535)
LEASE_RECORD = Map(
    {
        "volume_id": _ID,
        "client": _KEY,
        "claim_id": _ID,
        "offer_id": _ID,
        "size": Int(1, 2**62),
        "wg_port": _PORT,
        "wg_private": _KEY,
        "client_wg_key": _KEY,
        "client_wg_port": _PORT,
        "client_endpoint": Bytes(max_len=16, min_len=16),
        "secrets": GRANT_SECRETS,
        "box": Bytes(max_len=MAX_GRANT_BOX, min_len=40),
        "expires_ms": Int(0, 2**63 - 1),
    },
    {"renewal_id": _ID, "renewal_expires_ms": Int(0, 2**63 - 1)},
)
_LIMITS: dict[str, Any] = {
    "raw": False,
    "strict_map_key": True,
    "use_list": False,
    "max_bin_len": MAX_GRANT_BOX,
    "max_str_len": 1024,
    "max_array_len": MAX_LEASES,
    "max_map_len": 32,
    "max_ext_len": 0,
}


def _record(lease: Lease) -> dict[str, object]:
    record: dict[str, object] = {
        "volume_id": lease.volume_id,
        "client": lease.client,
        "claim_id": lease.claim_id,
        "offer_id": lease.offer_id,
        "size": lease.size,
        "wg_port": lease.wg_port,
        "wg_private": lease.wg_private.raw,
        "client_wg_key": lease.client_wg_key,
        "client_wg_port": lease.client_wg_port,
        "client_endpoint": lease.client_endpoint.packed,
        "secrets": lease.secrets.fields(),
        "box": lease.box,
        "expires_ms": lease.expires_ms,
    }
    if lease.renewal is not None:
        record["renewal_id"], record["renewal_expires_ms"] = lease.renewal
    return record


def pack_leases(leases: list[Lease]) -> bytes:
    """The file content for these leases."""
    body = {"format": FORMAT, "leases": [_record(lease) for lease in leases]}
    packed: bytes = msgpack.packb(body)
    return packed


def unpack_leases(data: bytes) -> tuple[list[Lease], int] | None:
    """(leases, records dropped) from file content; None if it is no lease file at all."""
    try:
        top = msgpack.unpackb(data, **_LIMITS)
    except Exception:  # truncated, oversized or not msgpack: one kind of bad file
        return None
    if not isinstance(top, dict) or top.get("format") != FORMAT:
        return None
    raw = top.get("leases")
    if not isinstance(raw, tuple):
        return None
    leases = [lease for item in raw if (lease := _lease(item)) is not None]
    return leases, len(raw) - len(leases)


def _lease(item: object) -> Lease | None:
    try:
        f = LEASE_RECORD.conform_map(item, 2, False)
    except SchemaViolation:
        return None
    secrets = GrantSecrets.from_fields(_map(f["secrets"]))
    if secrets is None:
        return None
    renewal = None
    if "renewal_id" in f and "renewal_expires_ms" in f:
        renewal = (_b(f["renewal_id"]), _i(f["renewal_expires_ms"]))
    return Lease(
        volume_id=_b(f["volume_id"]),
        client=_b(f["client"]),
        claim_id=_b(f["claim_id"]),
        offer_id=_b(f["offer_id"]),
        size=_i(f["size"]),
        wg_port=_i(f["wg_port"]),
        wg_private=WgPrivateKey(_b(f["wg_private"])),
        client_wg_key=_b(f["client_wg_key"]),
        client_wg_port=_i(f["client_wg_port"]),
        client_endpoint=IPv6Address(_b(f["client_endpoint"])),
        secrets=secrets,
        box=_b(f["box"]),
        expires_ms=_i(f["expires_ms"]),
        renewal=renewal,
    )


def _b(value: object) -> bytes:
    return value if type(value) is bytes else b""


def _i(value: object) -> int:
    return value if type(value) is int else 0


def _map(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}
