"""Control API routes of the ledger (docs/accounting.md).

- `GET /v1/ledger?offset=O&limit=L`: summary (count, head, verified, totals) and entries.
- `POST /v1/ledger/sign` `{"body": {...}}`: this node's signature of a receipt body it is
  party to, for the local Volume Provider or CFS (they never hold the node key).
- `POST /v1/ledger/receipts` `{"body": ..., "provider_sig": ..., "consumer_sig": ...}`:
  record a receipt signed by both parties. 400 when it is malformed or forged, 409 when it is
  already recorded or the ledger is damaged.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from rms.daemon import Daemon
from rms.entitlement.control import json_body
from rms.ledger.chain import LedgerError
from rms.ledger.receipt import MAX_RECEIPT_BYTES, ReceiptError
from rms.ledger.store import LedgerStore

MAX_PAGE = 1000


def _int_query(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name, str(default))
    if not raw.isdigit() or int(raw) > high:
        raise web.HTTPBadRequest(text=f"{name} is a whole number in 0..{high}")
    return int(raw)


def routes(store: LedgerStore) -> list[web.RouteDef]:
    """The ledger routes, bound to the node's store."""
    lock = asyncio.Lock()

    async def get_ledger(request: web.Request) -> web.Response:
        offset = _int_query(request, "offset", 0, 2**31)
        limit = _int_query(request, "limit", 100, MAX_PAGE)
        entries = store.ledger.entries[offset : offset + limit]
        return web.json_response({**store.summary(), "offset": offset, "entries": entries})

    async def sign(request: web.Request) -> web.Response:
        value = await json_body(request, MAX_RECEIPT_BYTES)
        if set(value) != {"body"}:
            raise web.HTTPBadRequest(text='expected {"body": {...}}')
        try:
            return web.json_response(store.sign(value["body"]))
        except ReceiptError as e:
            raise web.HTTPBadRequest(text=str(e)) from None

    async def record(request: web.Request) -> web.Response:
        value = await json_body(request, MAX_RECEIPT_BYTES)
        try:
            async with lock:  # one append at a time; the fsync runs off the event loop
                entry = await asyncio.to_thread(store.record, value, int(time.time()))
        except ReceiptError as e:
            raise web.HTTPBadRequest(text=str(e)) from None
        except LedgerError as e:
            raise web.HTTPConflict(text=str(e)) from None
        return web.json_response({"entry": entry})

    return [
        web.get("/v1/ledger", get_ledger),
        web.post("/v1/ledger/sign", sign),
        web.post("/v1/ledger/receipts", record),
    ]


def attach(store: LedgerStore, daemon: Daemon) -> None:
    """Add the ledger's status section, its health check and its routes to the daemon."""
    daemon.board.add_section("ledger", store.summary)
    daemon.board.add_check("ledger", lambda: store.problem)
    daemon.add_routes(routes(store))
