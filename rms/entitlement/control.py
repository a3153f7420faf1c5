"""Control API routes of the entitlement service (docs/entitlement.md).

- `GET /v1/entitlement`: contribution, availability, entitlement, probation, policy in force.
- `POST /v1/entitlement/preview` `{"storage_bytes": N, "cpu_millicores": M}` (either or
  both): what the entitlement would become, nothing applied (the web UI shows it first).
- `POST /v1/contribution` with the same body: apply and keep the new offer.
- `POST /v1/contribution/measured` `{"capacity_bytes": C, "leased_bytes": N,
  "audited_bytes": M or null}`: the Volume Provider's measurement of the room it really has,
  what is leased, and what passes its clients' audits (null: not known).
- `GET /v1/policy`: the policy document in force and every value of the policy.
Bad bodies are a 400 with the reason; nothing is applied.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from rms.daemon import Daemon
from rms.entitlement.arithmetic import MAX_AMOUNT, ContributionError
from rms.entitlement.service import OFFER_KEYS, EntitlementService, measured_report
from rms.policydoc import policy_fields

MAX_BODY = 4096


async def json_body(request: web.Request, max_bytes: int = MAX_BODY) -> dict[str, Any]:
    """The request's JSON object; 413 when too large, 400 when it is not an object."""
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=len(raw))
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    if not isinstance(value, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return value


def amounts(value: dict[str, Any], keys: tuple[str, ...], *, all_needed: bool) -> dict[str, int]:
    """The body's whole-number fields among `keys`; 400 for any other key or a bad value."""
    unknown = sorted(set(value) - set(keys))
    if unknown or not value or (all_needed and set(value) != set(keys)):
        raise web.HTTPBadRequest(text=f"expected {{{', '.join(keys)}}}")
    for name, number in value.items():
        if type(number) is not int or not 0 <= number <= MAX_AMOUNT:
            raise web.HTTPBadRequest(text=f"{name} is a whole number in 0..2**63-1")
    return dict(value)


def routes(service: EntitlementService) -> list[web.RouteDef]:
    """The entitlement routes, bound to the node's service."""

    async def get_entitlement(request: web.Request) -> web.Response:
        return web.json_response(service.snapshot())

    async def preview(request: web.Request) -> web.Response:
        offer = amounts(await json_body(request), OFFER_KEYS, all_needed=False)
        return web.json_response(service.preview(offer))

    async def change(request: web.Request) -> web.Response:
        offer = amounts(await json_body(request), OFFER_KEYS, all_needed=False)
        return web.json_response(service.set_offer(offer))

    async def measured(request: web.Request) -> web.Response:
        try:
            report = measured_report(await json_body(request))
        except ContributionError as e:
            raise web.HTTPBadRequest(text=str(e)) from None
        return web.json_response(service.set_measured(report))

    async def get_policy(request: web.Request) -> web.Response:
        policy = service.policy_file
        return web.json_response({**policy.as_json(), "values": policy_fields(policy.policy)})

    return [
        web.get("/v1/entitlement", get_entitlement),
        web.post("/v1/entitlement/preview", preview),
        web.post("/v1/contribution", change),
        web.post("/v1/contribution/measured", measured),
        web.get("/v1/policy", get_policy),
    ]


def attach(service: EntitlementService, daemon: Daemon) -> None:
    """Add the status section, the heartbeat task and the routes (the policy check is the
    daemon's own)."""
    daemon.board.add_section("entitlement", service.snapshot)
    daemon.add_service("entitlement", service.run)
    daemon.add_routes(routes(service))
