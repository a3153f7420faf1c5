"""The control API routes of the VPN manager (thin: the decisions are the manager's).

`POST /v1/vpns/{vpn}/leave`, `POST /v1/vpns/{vpn}/rotate` and `POST /v1/vpns/want`
(docs/management-vpns.md). The control server lets only root and the admin group in.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from aiohttp import web

from rms.vpn.want import MAX_BODY_BYTES, WantError, parse_want

if TYPE_CHECKING:
    from rms.vpn.manager import VpnManager
    from rms.vpn.membership import Membership


def routes(manager: VpnManager) -> list[web.RouteDef]:
    """Leave a VPN, rotate this node's key in one, set how many VPNs the node wants."""

    async def leave(request: web.Request) -> web.Response:
        membership = _requested(manager, request)
        try:
            manager.leave(membership)
        except ValueError as e:  # a guardian cannot leave (yet)
            raise web.HTTPConflict(text=str(e)) from None
        body = {"vpn": str(membership.vpn_id), "requested": "leave"}
        return web.json_response(body, status=202)

    async def rotate(request: web.Request) -> web.Response:
        membership = _requested(manager, request)
        try:
            key = membership.rotate().public_key()
        except RuntimeError as e:
            raise web.HTTPConflict(text=str(e)) from None
        body = {"vpn": str(membership.vpn_id), "requested": "rotate", "public_key": key.base64()}
        return web.json_response(body, status=202)

    async def want(request: web.Request) -> web.Response:
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        try:
            asked = parse_want(raw)
            manager.want.set(asked.count, "request", asked.toward)
        except WantError as e:
            why = f"not taken: {e}; the wanted count is unchanged"
            raise web.HTTPBadRequest(text=why) from None
        manager.wanted_changed()
        return web.json_response({**manager.want.status(), "held": len(manager.memberships)})

    return [
        web.post("/v1/vpns/want", want),  # before the {vpn} routes: "want" is no VPN id
        web.post("/v1/vpns/{vpn}/leave", leave),
        web.post("/v1/vpns/{vpn}/rotate", rotate),
    ]


def _requested(manager: VpnManager, request: web.Request) -> Membership:
    try:
        vpn_id = uuid.UUID(request.match_info["vpn"])
        return manager.membership(vpn_id)
    except ValueError:
        raise web.HTTPBadRequest(text="not a VPN id") from None
    except KeyError:
        raise web.HTTPNotFound(text="this node is not a member of that VPN") from None
