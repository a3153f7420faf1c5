"""`POST /v1/broadcast` on the control API: the local services' way to ask the cloud.

The body is a JSON object `{"kind": "storage"|"cpu", "amount": N, "hop_limit": H}`
(hop_limit optional, default policy.gossip_max_hops), optionally with `terms` (base64,
kind-specific: docs/volumes.md) and `exclude_locations` / `exclude_networks` (UUIDs); the
answer is the request id. Bad input is a 400 with the reason, never a broadcast.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from rms.gossip.adapter import GossipService
from rms.gossip.exchange import decode_terms, json_object
from rms.wire.messages.gossip import KINDS, MAX_EXCLUDED, RequestBody

MAX_BODY = 4096
MAX_AMOUNT = 2**63 - 1
FIELDS = {"kind", "amount", "hop_limit", "terms", "exclude_locations", "exclude_networks"}


def routes(
    service: GossipService, on_broadcast: Callable[[bytes], None] | None = None
) -> list[web.RouteDef]:
    """The broadcast route, bound to this node's gossip service; `on_broadcast(request_id)`
    is told of each request made (rms.gossip.exchange collects its answers)."""

    async def broadcast(request: web.Request) -> web.Response:
        fields = _fields(await request.content.read(MAX_BODY + 1))
        hop_limit = fields.get("hop_limit", service.core.policy.gossip_max_hops)
        request_id = service.core.new_request_id()
        if on_broadcast is not None:
            on_broadcast(request_id)
        body = RequestBody(
            request_id,
            fields["kind"],
            fields["amount"],
            hop_limit,
            exclude_locations=_uuids(fields, "exclude_locations"),
            exclude_networks=_uuids(fields, "exclude_networks"),
            terms=decode_terms(fields["terms"]) if "terms" in fields else b"",
        )
        service.broadcast(body)
        return web.json_response({"request_id": request_id.hex()}, status=202)

    return [web.post("/v1/broadcast", broadcast)]


def _fields(raw: bytes) -> dict[str, Any]:
    value = json_object(raw, MAX_BODY)
    if set(value) - FIELDS:
        raise web.HTTPBadRequest(text="expected {kind, amount[, hop_limit, terms, exclude_…]}")
    if value.get("kind") not in KINDS:
        raise web.HTTPBadRequest(text=f"kind is one of {', '.join(KINDS)}")
    for name, low, high in (("amount", 1, MAX_AMOUNT), ("hop_limit", 1, 255)):
        number = value.get(name, low)
        if type(number) is not int or not low <= number <= high:
            raise web.HTTPBadRequest(text=f"{name} is a whole number in {low}..{high}")
    return value


def _uuids(fields: dict[str, Any], name: str) -> tuple[bytes, ...]:
    texts = fields.get(name, [])
    if not isinstance(texts, list) or len(texts) > MAX_EXCLUDED:
        raise web.HTTPBadRequest(text=f"{name} is a list of at most {MAX_EXCLUDED} UUIDs")
    try:
        return tuple(uuid.UUID(t).bytes for t in texts)
    except (ValueError, TypeError, AttributeError):
        raise web.HTTPBadRequest(text=f"{name} is a list of UUIDs") from None
