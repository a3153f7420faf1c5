"""Local services' side of the broadcast, on the control API (docs/volumes.md, "The RMS side").

The RMS holds the node key and the broadcast; the Volume Provider and the CFS are other
processes. Three routes, admin-only like every control route:

- `GET /v1/broadcast/requests?kind=storage&after=N&wait=S`: a long poll for the verified
  requests delivered to this node after inbox sequence number N (waits up to S seconds,
  at most 30, for the first one);
- `POST /v1/broadcast/answer`: `{"handle", "amount", "addresses"[, "expires_ms",
  "terms"]}` answers the request whose handle (its digest) a poll returned; the RMS boxes,
  signs and routes it (rms.gossip.core);
- `GET /v1/broadcast/{request_id}/answers`: the opened answers to this node's request.

Ids, keys and handles are hex; `terms` are base64; addresses are IPv6 text. Bad input is a
400 saying why; an unknown or expired handle or request id is a 404.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import Any

from aiohttp import web

from rms.gossip.adapter import GossipService
from rms.gossip.events import AnswerReceived, Delivered
from rms.gossip.inbox import Inbox, Numbered
from rms.gossip.requests import Answer
from rms.wire.messages.gossip import KINDS, MAX_TERMS

__all__ = ["Exchange", "decode_terms", "json_object"]

MAX_BODY = 4096
MAX_WAIT_S = 30.0
MAX_AMOUNT = 2**63 - 1


class Exchange:
    """Keeps delivered requests and own answers for local services; serves the routes."""

    def __init__(
        self, service: GossipService, inbox: Inbox, clock: Callable[[], float] = time.time
    ) -> None:
        self.service = service
        self.inbox = inbox
        self._clock = clock
        self._arrived = asyncio.Event()

    def heard(self, event: Delivered | AnswerReceived) -> None:
        """Take one event of the gossip service (its `on_event`)."""
        if isinstance(event, Delivered):
            self.inbox.delivered(event.request, event.hops_left, self._clock())
            self._arrived.set()
            self._arrived = asyncio.Event()
        else:
            self.inbox.answered(event.answer)

    def routes(self) -> list[web.RouteDef]:
        """The three routes of this module."""
        return [
            web.get("/v1/broadcast/requests", self._requests),
            web.post("/v1/broadcast/answer", self._answer),
            web.get("/v1/broadcast/{request_id}/answers", self._answers),
        ]

    async def _requests(self, request: web.Request) -> web.Response:
        after, kind, wait = _poll_args(request.query)
        found, missed = self.inbox.after(after, kind, self._clock())
        if not found and wait > 0:
            arrived = self._arrived
            try:
                async with asyncio.timeout(wait):
                    await arrived.wait()
            except TimeoutError:
                pass
            found, missed = self.inbox.after(after, kind, self._clock())
        body = {
            "next": self.inbox.last_seq,
            "missed": missed,
            "requests": [_request_json(n) for n in found],
        }
        return web.json_response(body)

    async def _answer(self, request: web.Request) -> web.Response:
        fields = json_object(await request.content.read(MAX_BODY + 1))
        handle = _hex(fields.get("handle"), 32, "handle")
        offer = _offer(fields)
        delivered = self.inbox.find(handle, self._clock())
        if delivered is None:
            raise web.HTTPNotFound(text="no such request, or it is too old to answer")
        self.service.answer(delivered, offer)
        return web.json_response({"answered": delivered.request_id.hex()}, status=202)

    async def _answers(self, request: web.Request) -> web.Response:
        request_id = _hex(request.match_info["request_id"], 16, "request id")
        answers = self.inbox.answers(request_id)
        if answers is None:
            raise web.HTTPNotFound(text="not a recent request of this node")
        body = {"request_id": request_id.hex(), "answers": [_answer_json(a) for a in answers]}
        return web.json_response(body)


def _poll_args(query: Any) -> tuple[int, str | None, float]:
    try:
        after = int(query.get("after", "0"))
        wait = float(query.get("wait", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="after is a whole number, wait a number of seconds") from None
    kind = query.get("kind")
    if kind is not None and kind not in KINDS:
        raise web.HTTPBadRequest(text=f"kind is one of {', '.join(KINDS)}")
    if not 0 <= after < 2**63 or not 0 <= wait <= MAX_WAIT_S:  # NaN fails both
        raise web.HTTPBadRequest(text=f"after >= 0, and wait in 0..{MAX_WAIT_S:g} s")
    return after, kind, wait


def _request_json(item: Numbered) -> dict[str, object]:
    req = item.request
    body = req.body
    return {
        "seq": item.seq,
        "handle": req.digest.hex(),
        "requester": req.requester.hex(),
        "request_id": req.request_id.hex(),
        "origin_ms": req.origin_ms,
        "hops_left": item.hops_left,
        "kind": body.kind,
        "amount": body.amount,
        "exclude_locations": [str(uuid.UUID(bytes=u)) for u in body.exclude_locations],
        "exclude_networks": [str(uuid.UUID(bytes=u)) for u in body.exclude_networks],
        "terms": base64.b64encode(body.terms).decode(),
    }


def _answer_json(answer: Answer) -> dict[str, object]:
    offer = answer.offer
    addresses = offer.get("addresses", ())
    terms = offer.get("terms", b"")
    return {
        "answerer": answer.answerer.hex(),
        "timestamp_ms": answer.timestamp_ms,
        "amount": offer.get("amount"),
        "addresses": [str(IPv6Address(a)) for a in addresses]
        if isinstance(addresses, tuple)
        else [],
        "expires_ms": offer.get("expires_ms"),
        "terms": base64.b64encode(terms if isinstance(terms, bytes) else b"").decode(),
    }


def _offer(fields: dict[str, Any]) -> dict[str, object]:
    allowed = {"handle", "amount", "addresses", "expires_ms", "terms"}
    if set(fields) - allowed:
        raise web.HTTPBadRequest(text=f"expected only {', '.join(sorted(allowed))}")
    amount = fields.get("amount")
    if type(amount) is not int or not 1 <= amount <= MAX_AMOUNT:
        raise web.HTTPBadRequest(text="amount is a whole number >= 1")
    offer: dict[str, object] = {"amount": amount, "addresses": _addresses(fields)}
    expires = fields.get("expires_ms")
    if expires is not None:
        if type(expires) is not int or not 0 <= expires <= MAX_AMOUNT:
            raise web.HTTPBadRequest(text="expires_ms is a whole number of ms since the epoch")
        offer["expires_ms"] = expires
    if "terms" in fields:
        offer["terms"] = decode_terms(fields["terms"])
    return offer


def _addresses(fields: dict[str, Any]) -> list[bytes]:
    texts = fields.get("addresses", [])
    if not isinstance(texts, list) or len(texts) > 4:
        raise web.HTTPBadRequest(text="addresses is a list of at most 4 IPv6 addresses")
    try:
        return [IPv6Address(t).packed for t in texts if isinstance(t, str)]
    except ValueError:
        raise web.HTTPBadRequest(text="addresses is a list of IPv6 addresses") from None


def decode_terms(value: object) -> bytes:
    """Base64 terms from a JSON body; a 400 when they are not base64 or too long."""
    if not isinstance(value, str) or len(value) > MAX_TERMS * 2:
        raise web.HTTPBadRequest(text=f"terms is base64 of at most {MAX_TERMS} bytes")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise web.HTTPBadRequest(text="terms is not base64") from None
    if len(raw) > MAX_TERMS:
        raise web.HTTPBadRequest(text=f"terms is base64 of at most {MAX_TERMS} bytes")
    return raw


def json_object(raw: bytes, cap: int = MAX_BODY) -> dict[str, Any]:
    """A request body that must be one JSON object of at most `cap` bytes; 400/413 else."""
    if len(raw) > cap:
        raise web.HTTPRequestEntityTooLarge(max_size=cap, actual_size=len(raw))
    try:
        value = json.loads(raw)
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    if not isinstance(value, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return value


def _hex(value: object, size: int, what: str) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise web.HTTPBadRequest(text=f"{what} is {size} bytes in hex")
    return raw
