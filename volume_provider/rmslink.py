"""The provider's side of the local RMS's control API (docs/volumes.md, "The RMS side").

- requests: `GET /v1/broadcast/requests?kind=storage&after=N&wait=S`, a long poll; each
  item becomes a `StorageRequest` (or is skipped, counted, when malformed: the RMS
  verified the signature, but the terms are the requester's bytes);
- offers: `POST /v1/broadcast/answer` with the request's handle; the RMS boxes and signs;
- the node: the `vpns` section of `GET /v1/status` (one management address per VPN) and
  the `entitlement` section (the storage the node contributes, when the provider's
  capacity follows it);
- status: `PUT /v1/status/sections/volumes`;
- the measured contribution: `POST /v1/contribution/measured` with the capacity the
  provider really has room for, the bytes leased and (when known) those passing audits; the
  node's entitlement follows it (docs/entitlement.md).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from rms.control.client import ControlClient
from rms.volumes import OfferTerms, RequestTerms, StorageRequest

__all__ = [
    "POLL_WAIT_S",
    "RmsLink",
    "contributed_bytes",
    "management_addresses",
    "measured_body",
    "offer_body",
    "parse_request",
]

POLL_WAIT_S = 25.0
SECTION = "volumes"


def parse_request(item: Mapping[str, Any]) -> StorageRequest | None:
    """A storage request from one long-poll item; None if any field is unusable."""
    try:
        terms = RequestTerms.unpack(base64.b64decode(str(item["terms"]), validate=True))
        requester = bytes.fromhex(str(item["requester"]))
        request_id = bytes.fromhex(str(item["request_id"]))
        size = item["amount"]
        excluded = (
            tuple(uuid.UUID(str(u)).bytes for u in item.get("exclude_locations", ())),
            tuple(uuid.UUID(str(u)).bytes for u in item.get("exclude_networks", ())),
        )
    except (KeyError, ValueError, TypeError, binascii.Error):
        return None
    if terms is None or item.get("kind") != "storage" or type(size) is not int or size < 1:
        return None
    if len(requester) != 32 or len(request_id) != 16:
        return None
    return StorageRequest(requester, request_id, size, terms, *excluded)


def offer_body(handle: str, terms: OfferTerms, addresses: list[IPv6Address]) -> dict[str, Any]:
    """The answer to post for a request: size, where to reach us, the packed terms."""
    return {
        "handle": handle,
        "amount": terms.size,
        "addresses": [str(a) for a in addresses[:4]],
        "expires_ms": terms.expires_ms,
        "terms": base64.b64encode(terms.pack()).decode(),
    }


def management_addresses(status: Mapping[str, Any]) -> list[IPv6Address]:
    """This node's management addresses, from the `vpns` section of its status."""
    found: list[IPv6Address] = []
    vpns = status.get("vpns")
    for vpn in vpns if isinstance(vpns, list) else []:
        try:
            found.append(IPv6Address(str(vpn["address"])))
        except (KeyError, TypeError, ValueError):
            continue
    return sorted(set(found))


def contributed_bytes(status: Mapping[str, Any]) -> int | None:
    """The storage this node offers (`rms contribute`), from the `entitlement` section."""
    section = status.get("entitlement")
    contribution = section.get("contribution") if isinstance(section, dict) else None
    value = contribution.get("storage_bytes") if isinstance(contribution, dict) else None
    return value if type(value) is int and value >= 0 else None


def measured_body(
    capacity: int, leased: int, allocated: int, disk_free: int, audited: int | None = None
) -> dict[str, int | None]:
    """The measurement to report: the capacity really offered is the configured (or
    followed) capacity, but no more than the volume files hold already plus the free room of
    their file system (sparse volumes grow into it); `leased` is what clients hold."""
    room = max(0, allocated) + max(0, disk_free)
    return {
        "capacity_bytes": max(0, min(capacity, room)),
        "leased_bytes": max(0, leased),
        "audited_bytes": audited,
    }


class RmsLink:
    """The control API calls the provider makes."""

    def __init__(self, socket: Path) -> None:
        self.control = ControlClient(socket, timeout=10.0)
        self.poller = ControlClient(socket, timeout=POLL_WAIT_S + 10.0)

    async def requests(self, after: int) -> tuple[list[dict[str, Any]], int]:
        """Storage requests delivered after `after` (waits up to POLL_WAIT_S); and the next."""
        route = f"/v1/broadcast/requests?kind=storage&after={after}&wait={POLL_WAIT_S:g}"
        answer = await self.poller.get_json(route)
        items = answer.get("requests")
        last = answer.get("next")
        next_after = last if type(last) is int and last >= 0 else after
        if next_after < after:  # the RMS restarted: its numbering starts again
            next_after = 0
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else [], (
            next_after
        )

    async def answer(self, body: dict[str, Any]) -> None:
        """Post one offer."""
        await self.control.post_json("/v1/broadcast/answer", body)

    async def node(self) -> tuple[list[IPv6Address], int | None]:
        """The node's management addresses, and the storage it contributes (None if the
        RMS does not say), from its status."""
        status = await self.control.status()
        return management_addresses(status), contributed_bytes(status)

    async def report(self, measured: dict[str, int | None]) -> None:
        """Tell the RMS what the provider really contributes (`measured_body`)."""
        await self.control.post_json("/v1/contribution/measured", measured)

    async def publish(self, section: dict[str, Any]) -> None:
        """Publish the `volumes` section of `rms status`."""
        await self.control.put_json(f"/v1/status/sections/{SECTION}", section)
