"""The ledger on disk: `<state_dir>/ledger.jsonl` (one entry a line) and `ledger.head.json`.

Appends go to the end of the file with fsync, then the signed head is replaced atomically. On
start the whole file is replayed and checked against the head; a ledger that does not verify
is kept as it is (it is evidence), reported as a problem of the node, and no longer written to
until its owner moves it aside (docs/accounting.md says how).

Control API routes (`routes`, `attach`):
- `GET /v1/ledger?offset=O&limit=L`: summary (count, head, verified, totals) and entries.
- `POST /v1/ledger/sign` `{"body": {...}}`: this node's signature of a receipt body it is
  party to, for the local Volume Provider or CFS (they never hold the node key).
- `POST /v1/ledger/receipts` `{"body": ..., "provider_sig": ..., "consumer_sig": ...}`:
  record a receipt signed by both parties. 400 when it is malformed or forged, 409 when it is
  already recorded or the ledger is damaged.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import structlog
from aiohttp import web

from rms.daemon import Daemon
from rms.entitlement.control import json_body
from rms.entitlement.state import read_capped, write_atomic
from rms.identity import NodeIdentity
from rms.ledger import receipt as rcpt
from rms.ledger.chain import Ledger, LedgerError, check_head, replay
from rms.ledger.receipt import MAX_RECEIPT_BYTES, ReceiptError

LEDGER_NAME = "ledger.jsonl"
HEAD_NAME = "ledger.head.json"
MAX_LEDGER_BYTES = 256 * 1024 * 1024
MAX_LINE_BYTES = 16 * 1024
log = structlog.get_logger("rms.ledger")


class LedgerBusy(LedgerError):
    """The ledger is still being verified after a start."""


class LedgerStore:
    """The node's ledger, verified on load, appended to as receipts arrive."""

    def __init__(self, state_dir: Path, identity: NodeIdentity, *, load: bool = True) -> None:
        self._path = state_dir / LEDGER_NAME
        self._head_path = state_dir / HEAD_NAME
        self._identity = identity
        self.problem: str | None = None
        self._offsets = array("q")  # where each entry's line starts in the file
        self._size = 0  # bytes of the file that are verified entries
        self.ledger = Ledger(identity.public_key)
        self.loaded = False
        if load:
            self.load()

    def load(self) -> None:
        """Verify the whole file (a year of receipts takes some seconds: the daemon runs this
        in a worker thread, and the ledger answers "busy" until it is done)."""
        ledger = self._load()
        self.ledger, self.loaded = ledger, True

    async def run(self) -> None:
        """The daemon task: load off the event loop, then nothing more to do."""
        await asyncio.to_thread(self.load)
        log.info("ledger.loaded", entries=self.ledger.count, verified=self.problem is None)

    def _load(self) -> Ledger:
        owner = self._identity.public_key
        try:
            ledger = self._replay_file(owner)
            head = read_capped(self._head_path, MAX_LINE_BYTES)
            if head is None and ledger.count:
                raise LedgerError("the signed head (ledger.head.json) is missing")
            if head is not None:
                check_head(ledger, _json(head))
        except LedgerError as e:
            self.problem = f"ledger does not verify: {e}"
            log.error("ledger.damaged", reason=str(e))
            self._offsets = array("q")
            return Ledger(owner)
        return ledger

    def _replay_file(self, owner: bytes) -> Ledger:
        """Stream the file line by line (never all of it in memory) through the chain check."""
        try:
            f = self._path.open("rb")
        except FileNotFoundError:
            return Ledger(owner)
        with f:
            if os.fstat(f.fileno()).st_size > MAX_LEDGER_BYTES:
                raise LedgerError("the ledger is larger than 256 MiB")
            ledger = replay(owner, self._lines(f))
            self._size = f.tell()
        return ledger

    def _lines(self, f: BinaryIO) -> Iterator[object]:
        number = 0
        while True:
            start = f.tell()
            line = f.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            if not line.endswith(b"\n"):
                cut = len(line) <= MAX_LINE_BYTES
                reason = (
                    "is cut short: a write was interrupted or the file cut"
                    if cut
                    else ("is larger than 16 KiB")
                )
                raise LedgerError(f"entry {number}: the line {reason}", number)
            try:
                value = _json(line)
            except LedgerError as e:
                raise LedgerError(f"entry {number}: {e}", number) from None
            self._offsets.append(start)
            number += 1
            yield value

    def page(self, offset: int, limit: int) -> list[object]:
        """Entries offset .. offset + limit - 1, read back from the file."""
        starts = self._offsets[offset : offset + limit]
        if not self.loaded or not starts:
            return []
        try:
            with self._path.open("rb") as f:
                f.seek(starts[0])
                return [json.loads(f.readline(MAX_LINE_BYTES + 1)) for _ in starts]
        except (OSError, ValueError, RecursionError):
            raise LedgerError("the ledger file changed under the daemon: restart it") from None

    def record(self, signed: object, now: int) -> dict[str, Any]:
        """Verify and append a receipt; LedgerError (or ReceiptError) when refused."""
        if not self.loaded:
            raise LedgerBusy("the ledger is still being verified: try again in a moment")
        if self.problem is not None:
            raise LedgerError(f"{self.problem}; nothing is recorded until it is repaired")
        entry = self.ledger.append(signed, now)
        line = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._offsets.append(self._size)
        self._size += len(line)
        write_atomic(self._head_path, json.dumps(self.ledger.head(self._identity)).encode())
        log.info(
            "ledger.recorded", index=entry["index"], resource=entry["receipt"]["body"]["resource"]
        )
        return entry

    def sign(self, body: object) -> dict[str, str]:
        """This node's signature of a receipt body it is party to."""
        if not isinstance(body, dict):
            raise rcpt.ReceiptError("a receipt body must be an object")
        role, sig = rcpt.sign_as(body, self._identity)
        return {"role": role, "sig": sig}

    def summary(self) -> dict[str, Any]:
        """Count, head, whether it verified, and totals provided/used."""
        return {
            "count": self.ledger.count,
            "head": self.ledger.head_hash.hex(),
            "verified": self.problem is None if self.loaded else None,  # None: verifying
            "problem": self.problem,
            "totals": self.ledger.totals(),
        }


def _json(data: bytes) -> object:
    if len(data) > MAX_LINE_BYTES:
        raise LedgerError("a ledger line is larger than 16 KiB")
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise LedgerError("a ledger line is not JSON") from None


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
        try:
            entries = store.page(offset, limit)
        except LedgerError as e:
            raise web.HTTPConflict(text=str(e)) from None
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
        except LedgerBusy as e:
            raise web.HTTPServiceUnavailable(text=str(e)) from None
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
    daemon.add_service("ledger", store.run)
    daemon.add_routes(routes(store))
