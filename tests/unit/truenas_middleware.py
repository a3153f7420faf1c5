"""A local stand-in for the TrueNAS middleware: JSON-RPC 2.0 over a TLS WebSocket on 127.0.0.1.

It implements the documented calls the TrueNAS target driver makes (auth.login_with_api_key,
pool.dataset.*, iscsi.global.config, iscsi.{auth,initiator,portal,target,extent,
targetextent}.{query,create,update,delete}) over in-memory state, with the validation
TrueNAS documents (CHAP secrets of 12-16 characters, unique tags, names and LUNs, target
names of lower-case letters, groups that name existing portals, initiator groups and tags,
extents on existing zvols) and errors shaped like TrueNAS's (`error.data.reason`).

`faults[method] = kind` makes the next call of that method misbehave once: `garbage`,
`array`, `not-jsonrpc`, `no-result`, `binary`, `huge`, `close`, `hang`, `stale-first`
(a replay of the previous response, then the right one), `forged-first` (a response with
another id, then the right one), `notify-first`, `echo-secrets` (an error quoting every
string parameter) and `bad-shape` (a result of the wrong type).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from rms.lab.ca import LabCA

BASENAME = "iqn.2005-10.org.freenas.ctl"
TARGET_NAME = re.compile(r"^[-a-z0-9.:]+$")


class CallError(Exception):
    """A call the middleware refuses; becomes a JSON-RPC error response."""

    def __init__(self, reason: str, errname: str = "EINVAL") -> None:
        super().__init__(reason)
        self.reason, self.errname = reason, errname


@dataclass
class Middleware:
    """The middleware's state and its call handlers."""

    api_key: str
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    listen_port: int = 3260
    _next: int = 0

    def table(self, name: str) -> dict[int, dict[str, Any]]:
        return self.tables.setdefault(name, {})

    def insert(self, name: str, row: dict[str, Any]) -> dict[str, Any]:
        self._next += 1
        row = {**row, "id": self._next}
        self.table(name)[self._next] = row
        return row

    def get(self, name: str, ident: Any) -> dict[str, Any]:
        if ident not in self.table(name):
            raise CallError(f"{name} {ident!r} does not exist", "ENOENT")
        return self.table(name)[ident]

    def dispatch(self, method: str, params: list[Any]) -> Any:
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            raise KeyError(method)
        return handler(*params)

    # -- pool.dataset --------------------------------------------------------------------

    def m_pool_dataset_query(self, filters: list[list[Any]] | None = None) -> list[Any]:
        out = list(self.datasets.values())
        for key, op, value in filters or []:
            if op == "^":
                out = [d for d in out if str(d[key]).startswith(value)]
            elif op == "=":
                out = [d for d in out if d[key] == value]
        return out

    def m_pool_dataset_create(self, data: dict[str, Any]) -> dict[str, Any]:
        name = data["name"]
        if name in self.datasets:
            raise CallError(f"pool_dataset_create.name: {name} already exists", "EEXIST")
        if data.get("type") != "VOLUME" or not isinstance(data.get("volsize"), int):
            raise CallError("pool_dataset_create.volsize: required for a VOLUME")
        size = data["volsize"]
        row = {"id": name, "name": name, "type": "VOLUME", "sparse": data.get("sparse", False),
               "volsize": {"value": str(size), "rawvalue": str(size), "parsed": size}}  # fmt: skip
        self.datasets[name] = row
        return row

    def m_pool_dataset_delete(self, name: str, options: dict[str, Any] | None = None) -> bool:
        if any(e["disk"] == f"zvol/{name}" for e in self.table("extent").values()):
            raise CallError(f"{name} is used by an iSCSI extent", "EBUSY")
        if self.datasets.pop(name, None) is None:
            raise CallError(f"{name} does not exist", "ENOENT")
        return True

    # -- iscsi ---------------------------------------------------------------------------

    def m_iscsi_global_config(self) -> dict[str, Any]:
        return {"id": 1, "basename": BASENAME, "listen_port": self.listen_port, "alua": False}

    def m_iscsi_global_sessions(self) -> list[Any]:
        return self.sessions

    def m_iscsi_auth_create(self, data: dict[str, Any]) -> dict[str, Any]:
        if not 12 <= len(data.get("secret", "")) <= 16:
            raise CallError(
                "iscsi_auth_create.secret: Secret must be between 12 and 16 characters."
            )
        if any(a["tag"] == data["tag"] for a in self.table("auth").values()):
            raise CallError("iscsi_auth_create.tag: tag is already in use", "EEXIST")
        return self.insert("auth", {"peeruser": "", "peersecret": "", **data})

    def m_iscsi_initiator_create(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.insert("initiator", {"initiators": [], "comment": "", **data})

    def m_iscsi_portal_create(self, data: dict[str, Any]) -> dict[str, Any]:
        for listen in data["listen"]:
            ipaddress.ip_address(listen["ip"])
        return self.insert("portal", {"comment": "", **data})

    def m_iscsi_target_create(self, data: dict[str, Any]) -> dict[str, Any]:
        self.check_target(data, None)
        return self.insert("target", {"alias": None, "mode": "ISCSI", "auth_networks": [], **data})

    def m_iscsi_target_update(self, ident: int, data: dict[str, Any]) -> dict[str, Any]:
        row = {**self.get("target", ident), **data}
        self.check_target(row, ident)
        self.table("target")[ident] = row
        return row

    def check_target(self, t: dict[str, Any], ident: int | None) -> None:
        if not TARGET_NAME.match(t["name"]) or len(t["name"]) > 120:
            raise CallError("iscsi_target_create.name: Lowercase alphanumeric characters only")
        for other in self.table("target").values():
            if other["id"] != ident and (other["name"], other["alias"]) == (t["name"], t["alias"]):
                raise CallError("iscsi_target_create.name: Target name must be unique", "EEXIST")
        tags = {a["tag"] for a in self.table("auth").values()}
        for g in t.get("groups", []):
            self.get("portal", g["portal"])
            if g.get("initiator") is not None:
                self.get("initiator", g["initiator"])
            if g.get("authmethod") != "NONE" and g.get("auth") not in tags:
                raise CallError("iscsi_target_create.groups.0.auth: Authentication group required")
        for n in t.get("auth_networks", []):
            ipaddress.ip_network(n)

    def m_iscsi_extent_create(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("type") != "DISK" or data["disk"].removeprefix("zvol/") not in self.datasets:
            raise CallError("iscsi_extent_create.disk: zvol does not exist", "ENOENT")
        if any(e["name"] == data["name"] for e in self.table("extent").values()):
            raise CallError("iscsi_extent_create.name: Extent name must be unique", "EEXIST")
        return self.insert("extent", {"comment": "", **data})

    def m_iscsi_targetextent_create(self, data: dict[str, Any]) -> dict[str, Any]:
        self.get("target", data["target"])
        self.get("extent", data["extent"])
        for m in self.table("targetextent").values():
            if (m["target"], m["lunid"]) == (data["target"], data["lunid"]):
                raise CallError("iscsi_targetextent_create.lunid: LUN ID is already in use")
        return self.insert("targetextent", data)

    def m_iscsi_target_delete(self, ident: int, force: bool = False) -> bool:
        self.get("target", ident)
        self.unmap("target", ident)
        del self.table("target")[ident]
        return True

    def m_iscsi_extent_delete(self, ident: int, remove: bool = False, force: bool = False) -> bool:
        self.get("extent", ident)
        self.unmap("extent", ident)
        del self.table("extent")[ident]
        return True

    def unmap(self, key: str, ident: int) -> None:
        maps = self.table("targetextent")
        for m in [m for m in maps.values() if m[key] == ident]:
            del maps[m["id"]]

    def m_iscsi_portal_delete(self, ident: int) -> bool:
        if any(g["portal"] == ident for t in self.table("target").values() for g in t["groups"]):
            raise CallError("portal is in use by a target", "EBUSY")
        del self.table("portal")[self.get("portal", ident)["id"]]
        return True

    def m_iscsi_initiator_delete(self, ident: int) -> bool:
        del self.table("initiator")[self.get("initiator", ident)["id"]]
        return True

    def m_iscsi_auth_delete(self, ident: int) -> bool:
        del self.table("auth")[self.get("auth", ident)["id"]]
        return True

    def __getattr__(self, name: str) -> Any:
        # iscsi.X.query for every table
        if name.startswith("m_iscsi_") and name.endswith("_query"):
            table = name.removeprefix("m_iscsi_").removesuffix("_query")
            return lambda *_: [dict(r) for r in self.table(table).values()]
        raise AttributeError(name)


def respond(ident: Any, result: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": ident, "result": result})


def refuse(ident: Any, code: int, message: str, reason: str, errname: str = "EINVAL") -> str:
    data = {"error": 22, "errname": errname, "reason": reason, "trace": None, "extra": []}
    return json.dumps(
        {"jsonrpc": "2.0", "id": ident, "error": {"code": code, "message": message, "data": data}}
    )


@dataclass
class Session:
    """One client connection: whether it logged in, and its last response (for replays)."""

    logged_in: bool = False
    last: str = ""


async def serve_ws(mw: Middleware, request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=1 << 20)
    await ws.prepare(request)
    session = Session()
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            break
        req = json.loads(msg.data)
        if not await answer(mw, ws, session, req):
            break
    return ws


async def answer(
    mw: Middleware, ws: web.WebSocketResponse, session: Session, req: dict[str, Any]
) -> bool:
    ident, method, params = req["id"], req["method"], req.get("params", [])
    mw.calls.append(method)
    fault = mw.faults.pop(method, "")
    if fault in ("close", "hang", "garbage", "array", "not-jsonrpc", "no-result", "binary", "huge"):
        return await misbehave(ws, fault, ident)
    if fault == "stale-first":
        await ws.send_str(session.last or respond(ident - 1, "stale"))
    elif fault == "forged-first":
        await ws.send_str(respond(ident + 1000, "forged"))
    elif fault == "notify-first":
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "method": "collection_update"}))
    reply = handle(mw, session, ident, method, params, fault)
    session.last = reply
    await ws.send_str(reply)
    return True


def handle(
    mw: Middleware, session: Session, ident: Any, method: str, params: list[Any], fault: str
) -> str:
    if fault == "echo-secrets":
        return refuse(ident, -32001, "Method call error", f"refused: {json.dumps(params)}")
    if method == "auth.login_with_api_key":
        session.logged_in = params == [mw.api_key]
        return respond(ident, session.logged_in)
    if not session.logged_in:
        return refuse(ident, -32001, "Method call error", "Not authenticated", "EACCES")
    try:
        result = mw.dispatch(method, params)
    except KeyError:
        return json.dumps(
            {
                "jsonrpc": "2.0",
                "id": ident,
                "error": {"code": -32601, "message": "Method not found"},
            }
        )
    except CallError as e:
        return refuse(ident, -32001, "Method call error", f"[{e.errname}] {e.reason}", e.errname)
    return respond(ident, {"unexpected": "object"} if fault == "bad-shape" else result)


async def misbehave(ws: web.WebSocketResponse, fault: str, ident: Any) -> bool:
    match fault:
        case "close":
            await ws.close()
            return False
        case "hang":
            await asyncio.sleep(30)
        case "garbage":
            await ws.send_str("<html>502 Bad Gateway</html>")
        case "array":
            await ws.send_str(json.dumps([respond(ident, True)]))
        case "not-jsonrpc":
            await ws.send_str(json.dumps({"jsonrpc": "1.0", "id": ident, "result": True}))
        case "no-result":
            await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": ident}))
        case "binary":
            await ws.send_bytes(b"\x00\x01")
        case "huge":
            await ws.send_str(respond(ident, "x" * (5 << 20)))
    return True


def tls_files(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 from a fresh lab CA, and the CA file to trust."""
    files = LabCA.create("TrueNAS test CA").write_server(directory, "truenas", [], ["127.0.0.1"])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(files.cert, files.key)
    return ctx, files.ca


async def start(mw: Middleware, directory: Path) -> tuple[web.AppRunner, str, Path]:
    """Serve mw on 127.0.0.1 over TLS: (runner, wss URL, CA file)."""
    ctx, ca = tls_files(directory)
    app = web.Application()

    async def route(request: web.Request) -> web.WebSocketResponse:
        return await serve_ws(mw, request)

    app.router.add_get("/api/current", route)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"wss://127.0.0.1:{port}/api/current", ca
