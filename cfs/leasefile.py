"""The CFS's saved leases: what a restarted CFS needs to take its own pool back (sans-IO).

Issue 5: leases expire unless renewed, and a CFS that restarts must renew the volumes that
hold its pool instead of building a new one. The file holds, per slot, the lease (provider,
size, expiry, iSCSI target with CHAP, the nested link with our private key), the device
path the pool knows it by, the replacement being resilvered onto, if any, and the
`VolumeSource`'s own state (for the volume protocol: the offer and grant it renews with).

It is JSON with an HMAC-SHA256 over the body, keyed by a key derived from the node key:
a file that was cut short, is garbage, is too big, or was edited (a forged lease, a
provider swapped, an entry added) is refused as a whole with `LeaseFileError`, never
half-read. It holds secrets: the adapter writes it mode 0600 (cfs/leasestore.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_interface
from typing import Any

from cfs.initiator.driver import VolumeTarget
from cfs.lease import Lease, Tunnel
from cfs.placement import POOL_WIDTH, Candidate
from rms.wg.keys import KeyFormatError, WgPrivateKey, WgPublicKey

VERSION = 1
MAX_BYTES = 256 * 1024  # 8 slots of a few KiB each; anything larger is not ours
MAX_SOURCE = 8 * 1024  # the VolumeSource's part of one lease, serialised
_NAME = re.compile(r"[A-Za-z0-9\[][A-Za-z0-9._:@\[\]/-]{0,254}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAC_CONTEXT = b"truecloud cfs lease file v1"


class LeaseFileError(Exception):
    """The saved leases cannot be used; the message says why (never a secret)."""


@dataclass(frozen=True)
class SavedSlot:
    """One slot of the pool: its lease and device, and the replacement resilvering, if any."""

    lease: Lease
    device: str
    state: dict[str, Any]  # the VolumeSource's own record of the lease
    replacement: Lease | None = None
    replacement_device: str = ""
    replacement_state: dict[str, Any] | None = None


@dataclass(frozen=True)
class SavedPool:
    """The pool a CFS holds: its name and its 8 slots."""

    pool: str
    slots: tuple[SavedSlot, ...]

    def leases(self) -> list[Lease]:
        """Every lease held, replacements included."""
        held = [s.lease for s in self.slots]
        return held + [s.replacement for s in self.slots if s.replacement is not None]


def mac_key(node_seed: bytes) -> bytes:
    """The file's HMAC key, derived from the node's key (so only this node writes it)."""
    return hashlib.sha256(_MAC_CONTEXT + node_seed).digest()


def encode(saved: SavedPool, key: bytes) -> bytes:
    """The file's bytes: {"body": …, "mac": hex}."""
    body = {"version": VERSION, "pool": saved.pool, "slots": [_slot(s) for s in saved.slots]}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    mac = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    data = json.dumps({"body": text, "mac": mac}).encode()
    if len(data) > MAX_BYTES:
        raise LeaseFileError(f"saved leases would take {len(data)} bytes, over {MAX_BYTES}")
    return data


def decode(data: bytes, key: bytes) -> SavedPool:
    """The saved pool from the file's bytes; LeaseFileError if anything is wrong with it."""
    if len(data) > MAX_BYTES:
        raise LeaseFileError(f"the lease file has {len(data)} bytes, over {MAX_BYTES}")
    try:
        outer = json.loads(data)
    except (ValueError, RecursionError):
        raise LeaseFileError("the lease file is not JSON (cut short or garbage)") from None
    if not isinstance(outer, dict) or set(outer) != {"body", "mac"}:
        raise LeaseFileError("the lease file has no body and mac")
    text, mac = outer["body"], outer["mac"]
    if not isinstance(text, str) or not isinstance(mac, str):
        raise LeaseFileError("the lease file has no body and mac")
    want = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, mac):
        raise LeaseFileError("the lease file's mac does not match: edited, or another node's")
    try:
        return _pool(json.loads(text))
    except (ValueError, TypeError, KeyError, RecursionError, KeyFormatError) as e:
        raise LeaseFileError(f"the lease file holds an unusable entry: {e}") from None


def _slot(s: SavedSlot) -> dict[str, Any]:
    out: dict[str, Any] = {"lease": _lease(s.lease), "device": s.device, "state": s.state}
    if s.replacement is not None:
        out["replacement"] = _lease(s.replacement)
        out["replacement_device"] = s.replacement_device
        out["replacement_state"] = s.replacement_state or {}
    return out


def _lease(le: Lease) -> dict[str, Any]:
    c, t, n = le.provider, le.target, le.tunnel
    return {
        "id": le.lease_id,
        "provider": [c.provider, c.location, c.network, _text_or_none(c.address), c.reliability],
        "offer": c.offer,
        "size": le.size,
        "expires_at": le.expires_at,
        "target": [t.portal, t.iqn, t.lun, t.chap_user, t.chap_secret],
        "tunnel": {
            "key": n.private_key.hex(),
            "address": str(n.address),
            "peer_key": n.peer_key.hex(),
            "endpoint": n.peer_endpoint,
            "peer_address": str(n.peer_address),
            "psk": base64.b64encode(n.psk).decode(),
            "port": n.listen_port,
        },
    }


def _text_or_none(address: IPv4Address | IPv6Address | None) -> str | None:
    return None if address is None else str(address)


def _pool(body: Any) -> SavedPool:
    if not isinstance(body, dict) or body.get("version") != VERSION:
        raise ValueError("unknown version")
    name, slots = _str(body["pool"], 64), body["slots"]
    if not isinstance(slots, list) or len(slots) != POOL_WIDTH:
        raise ValueError(f"a pool has {POOL_WIDTH} slots")
    saved = SavedPool(name, tuple(_saved_slot(s) for s in slots))
    ids = [le.lease_id for le in saved.leases()]
    providers = [s.lease.provider.provider for s in saved.slots]
    devices = [s.device for s in saved.slots]
    if len(set(ids)) != len(ids) or len(set(providers)) != len(providers):
        raise ValueError("a lease or provider appears twice")
    if len(set(devices)) != len(devices):
        raise ValueError("a device appears twice")
    return saved


def _saved_slot(raw: Any) -> SavedSlot:
    if not isinstance(raw, dict):
        raise ValueError("a slot is not an object")
    lease, device, state = _to_lease(raw["lease"]), _path(raw["device"]), _state(raw["state"])
    if "replacement" not in raw:
        return SavedSlot(lease, device, state)
    new, new_device = _to_lease(raw["replacement"]), _path(raw["replacement_device"])
    return SavedSlot(lease, device, state, new, new_device, _state(raw["replacement_state"]))


def _to_lease(raw: Any) -> Lease:
    provider, location, network, address, reliability = raw["provider"]
    if not _HEX64.fullmatch(_str(provider, 64)):
        raise ValueError("a provider id is not 64 hex digits")
    rel = float(reliability)
    if not (math.isfinite(rel) and 0.0 <= rel <= 1.0):
        raise ValueError("a reliability is not within 0..1")
    where = None if address is None else ip_address(_str(address, 64))
    candidate = Candidate(
        provider, _str(location, 64), _str(network, 64), where, rel, _str(raw["offer"], 128)
    )
    portal, iqn, lun, user, secret = raw["target"]
    target = VolumeTarget(
        _name(portal), _name(iqn), _int(lun, 255), _str(user, 255), _str(secret, 255)
    )
    t = raw["tunnel"]
    tunnel = Tunnel(
        WgPrivateKey.from_hex(_str(t["key"], 64)),
        ip_interface(_str(t["address"], 64)),
        WgPublicKey.from_hex(_str(t["peer_key"], 64)),
        _name(t["endpoint"]),
        ip_address(_str(t["peer_address"], 64)),
        base64.b64decode(_str(t["psk"], 64), validate=True) if t["psk"] else b"",
        _int(t["port"], 65535),
    )
    expires = float(raw["expires_at"])
    if not math.isfinite(expires):
        raise ValueError("an expiry is not a time")
    return Lease(_name(raw["id"]), candidate, _int(raw["size"], 1 << 50), expires, target, tunnel)


def _state(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or len(json.dumps(raw)) > MAX_SOURCE:
        raise ValueError(f"a source record is not an object of at most {MAX_SOURCE} bytes")
    return raw


def _str(raw: Any, most: int) -> str:
    if not isinstance(raw, str) or len(raw) > most:
        raise ValueError(f"a text field is not a string of at most {most} characters")
    return raw


def _name(raw: Any) -> str:
    if not isinstance(raw, str) or not _NAME.fullmatch(raw):
        raise ValueError("a name holds characters a target, portal or id never has")
    return raw


def _path(raw: Any) -> str:
    text = _str(raw, 4096)
    if not text.startswith("/") or "\0" in text:
        raise ValueError("a device is not an absolute path")
    return text


def _int(raw: Any, most: int) -> int:
    if type(raw) is not int or not 0 <= raw <= most:
        raise ValueError(f"a number is not an integer within 0..{most}")
    return raw


__all__ = ["LeaseFileError", "SavedPool", "SavedSlot", "decode", "encode", "mac_key"]
