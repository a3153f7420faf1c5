"""The DHT's control API routes: lookups, and the node's own records signed by the RMS.

Like every control route they are for root and the admin group only (the control server's
middleware). Other local services (the Volume Provider) publish through `POST
/v1/dht/provider`: they never hold the node key; the RMS signs the record, puts it, and
republishes it until the daemon stops.

- `POST /v1/dht/get` with one of `{"key": HEX}`, `{"public_key": HEX}` (a peer record),
  `{"node_id": HEX}` (find the node, then its peer record), `{"providers": "storage"|"cpu"}`,
  `{"vpn": UUID}`: `found`, `record` or `records`, `rpcs`, `copies`, `repaired`, `elapsed_ms`.
- `POST /v1/dht/provider` with `{"resource", "amount", "localities": [UUID…]}`: `stored`,
  `key`, `record`.
- `GET /v1/dht/records`: `records`, this node's own.

HEX is 64 hex digits (32 bytes). Bad input is a 400 that says what is wrong; a body over
`MAX_BODY` is a 413; too many lookups at once a 503; a lookup past its deadline a 504.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from rms.dht.records import RESOURCES, RecordError, parse_record, peer_key, provider_key, vpn_key
from rms.dht.service import DhtBusy, DhtService
from rms.dht.types import LookupResult
from rms.identity import node_id_of

__all__ = ["MAX_BODY", "describe", "routes"]

MAX_BODY = 4096
MAX_AMOUNT = 2**63 - 1
MAX_LOCALITIES = 4
GET_FIELDS = ("key", "public_key", "node_id", "providers", "vpn")

T = TypeVar("T")


def routes(service: DhtService) -> list[web.RouteDef]:
    """The DHT routes, bound to this node's DHT service."""

    async def get(request: web.Request) -> web.Response:
        name, value = _one_of(await _body(request))
        started = time.monotonic()
        answer = await _guarded(_lookup(service, name, value))
        answer["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
        return web.json_response(answer)

    async def provider(request: web.Request) -> web.Response:
        resource, amount, localities = _provider_fields(await _body(request))
        try:
            result = await _guarded(service.provide(resource, amount, localities))
        except RecordError as e:
            raise web.HTTPBadRequest(text=f"the record cannot be made: {e}") from None
        record = service.core.own.get((provider_key(resource), service.identity.public_key))
        body = {"key": result.key.hex(), "stored": result.stored, "rpcs": result.rpcs}
        body["record"] = None if record is None else describe(record.raw)
        return web.json_response(body, status=202 if result.stored else 200)

    async def records(request: web.Request) -> web.Response:
        return web.json_response({"records": [describe(raw) for raw in service.own_records()]})

    return [
        web.post("/v1/dht/get", get),
        web.post("/v1/dht/provider", provider),
        web.get("/v1/dht/records", records),
    ]


async def _guarded(work: Awaitable[T]) -> T:
    try:
        return await work
    except DhtBusy as e:
        raise web.HTTPServiceUnavailable(text=f"{e}; try again shortly") from None
    except TimeoutError:
        raise web.HTTPGatewayTimeout(text="the DHT lookup did not finish in time") from None


async def _lookup(service: DhtService, name: str, value: bytes | str) -> dict[str, Any]:
    if name == "node_id" and isinstance(value, bytes):
        key, result = await service.peer(value)
        answer = _answer(result, single=True)
        answer["public_key"] = None if key is None else key.hex()
        answer["found"] = key is not None and answer["found"]
        return answer
    finders: dict[str, Callable[[Any], Awaitable[LookupResult]]] = {
        "key": service.get,
        "public_key": lambda k: service.get(peer_key(k)),
        "providers": lambda r: service.find_records(provider_key(r)),
        "vpn": lambda v: service.find_records(vpn_key(v)),
    }
    result = await finders[name](value)
    return _answer(result, single=name in ("key", "public_key"))


def _answer(result: LookupResult, *, single: bool) -> dict[str, Any]:
    records = [describe(r) for r in result.records]
    record = None if result.record is None else describe(result.record)
    return {
        "key": result.key.hex(),
        "found": record is not None if single else bool(records),
        "record": record,
        "records": records,
        "rpcs": result.rpcs,
        "copies": result.copies,  # valid copies the lookup met; the newest is returned
        "repaired": result.repaired,  # stale replicas it sent the newest copy to
    }


def describe(raw: bytes) -> dict[str, Any]:
    """A verified record as JSON: bytes in hex, and the signed bytes for re-checking."""
    record = parse_record(raw)
    return {
        "kind": record.kind,
        "publisher": record.publisher.hex(),
        "node_id": node_id_of(record.publisher).hex(),
        "seq": record.seq,
        "expires": record.expires,
        "fields": _plain(record.fields),
        "raw": raw.hex(),
    }


def _plain(value: object) -> object:
    if isinstance(value, bytes):
        return str(uuid.UUID(bytes=value)) if len(value) == 16 else value.hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than json allows
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    if not isinstance(value, dict):
        raise web.HTTPBadRequest(text="the body is a JSON object")
    return value


def _one_of(body: dict[str, Any]) -> tuple[str, bytes | str]:
    if len(body) != 1 or next(iter(body)) not in GET_FIELDS:
        raise web.HTTPBadRequest(text=f"give exactly one of {', '.join(GET_FIELDS)}")
    name, value = next(iter(body.items()))
    if name == "providers":
        if value not in RESOURCES:
            raise web.HTTPBadRequest(text=f"providers is one of {', '.join(RESOURCES)}")
        return name, str(value)
    if name == "vpn":
        return name, _uuid(value, "vpn")
    return name, _hex32(value, name)


def _hex32(value: object, name: str) -> bytes:
    if isinstance(value, str) and len(value) == 64:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    raise web.HTTPBadRequest(text=f"{name} is 64 hex digits (32 bytes)")


def _uuid(value: object, name: str) -> bytes:
    if isinstance(value, str) and len(value) <= 64:
        try:
            return uuid.UUID(value).bytes
        except ValueError:
            pass
    raise web.HTTPBadRequest(text=f"{name} is a UUID")


def _provider_fields(body: dict[str, Any]) -> tuple[str, int, list[bytes]]:
    if set(body) - {"resource", "amount", "localities"} or "resource" not in body:
        raise web.HTTPBadRequest(text="expected {resource, amount[, localities]}")
    if body["resource"] not in RESOURCES:
        raise web.HTTPBadRequest(text=f"resource is one of {', '.join(RESOURCES)}")
    amount = body.get("amount")
    if type(amount) is not int or not 0 <= amount <= MAX_AMOUNT:
        raise web.HTTPBadRequest(text=f"amount is a whole number in 0..{MAX_AMOUNT}")
    localities = body.get("localities", [])
    if not isinstance(localities, list) or len(localities) > MAX_LOCALITIES:
        raise web.HTTPBadRequest(text=f"localities is a list of at most {MAX_LOCALITIES} UUIDs")
    return str(body["resource"]), amount, [_uuid(u, "a locality") for u in localities]
