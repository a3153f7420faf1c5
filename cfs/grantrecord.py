"""The volume protocol's part of a saved lease: what renews and releases it after a restart.

`RmsVolumeSource` renews and releases through `rms.volumes.ClientCore`, which knows a lease
by the offer it came from (provider key, management addresses, terms) and the claim that
won it. This module turns that `ClientLease` into a JSON-safe record and back (sans-IO).
The grant's secrets are not stored twice: they are the lease's own target and link. A
record that does not fit its lease (another provider's key, a target or inner address the
volume id does not imply) is refused: a forged entry can make the CFS neither log in to,
nor renew with, anyone but the provider that granted the volume.
"""

from __future__ import annotations

import base64
from ipaddress import IPv6Address, IPv6Interface
from typing import Any

from cfs.lease import Lease
from rms.identity import node_id_of
from rms.volumes.client import ClientLease
from rms.volumes.grants import GrantSecrets
from rms.volumes.terms import Offer, inner_addresses, iqn_for


class RecordError(ValueError):
    """A saved record does not describe the lease it is stored with."""


def grant_record(held: ClientLease) -> dict[str, Any]:
    """The record of a lease the core holds."""
    offer = held.offer
    return {
        "provider": offer.provider.hex(),
        "addresses": [str(a) for a in offer.addresses],
        "terms": base64.b64encode(offer.terms.pack()).decode(),
        "claim_id": held.claim_id.hex(),
        "expires_ms": held.expires_ms,
    }


def client_lease(record: dict[str, Any], lease: Lease) -> ClientLease:
    """The core's lease back from its record and the CFS's lease; RecordError if they differ."""
    try:
        volume_id = bytes.fromhex(lease.lease_id)
        provider = bytes.fromhex(_text(record["provider"], 64))
        terms = base64.b64decode(_text(record["terms"], 2048), validate=True)
        addresses = record["addresses"]
        claim_id = bytes.fromhex(_text(record["claim_id"], 64))
        expires_ms = record["expires_ms"]
    except (KeyError, ValueError, TypeError) as e:
        raise RecordError(f"lease {lease.lease_id[:16]}: malformed record ({e})") from None
    if not isinstance(addresses, list) or type(expires_ms) is not int:
        raise RecordError(f"lease {lease.lease_id[:16]}: malformed record")
    offer = Offer.from_answer(provider, [str(a) for a in addresses][:4], terms)
    if offer is None:
        raise RecordError(f"lease {lease.lease_id[:16]}: the offer in its record is unusable")
    if node_id_of(provider).hex() != lease.provider.provider:
        raise RecordError(f"lease {lease.lease_id[:16]}: record of another provider")
    secrets = _secrets(lease, volume_id)
    return ClientLease(volume_id, offer, claim_id, offer.terms.size, expires_ms, secrets)


def _secrets(lease: Lease, volume_id: bytes) -> GrantSecrets:
    t, n = lease.target, lease.tunnel
    portal, client = inner_addresses(volume_id)
    host, _, port = n.peer_endpoint.rpartition(":")
    address = n.address
    if t.iqn != iqn_for(volume_id) or n.peer_address != portal:
        raise RecordError(f"lease {lease.lease_id[:16]}: target not the volume's own")
    if not isinstance(address, IPv6Interface) or address.ip != client:
        raise RecordError(f"lease {lease.lease_id[:16]}: link address not the volume's own")
    try:
        endpoint, endpoint_port = IPv6Address(host.strip("[]")), int(port)
        portal_port = int(t.portal.rpartition(":")[2])
    except ValueError:
        raise RecordError(f"lease {lease.lease_id[:16]}: unusable endpoint") from None
    return GrantSecrets(
        t.iqn, portal, portal_port, client, address.network.prefixlen, t.chap_user,
        t.chap_secret, n.peer_key.raw, n.psk, endpoint, endpoint_port,
    )  # fmt: skip


def _text(raw: object, most: int) -> str:
    if not isinstance(raw, str) or len(raw) > most:
        raise ValueError("not a short text")
    return raw


__all__ = ["RecordError", "client_lease", "grant_record"]
