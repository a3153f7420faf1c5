"""A client of the TrueNAS middleware: JSON-RPC 2.0 over a WebSocket (TrueNAS 25.04 and later).

The middleware listens on `wss://HOST/api/current`. A session starts with
`auth.login_with_api_key`; then each request `{"jsonrpc": "2.0", "id", "method", "params"}`
gets one response carrying the same id and either `result` or `error` (whose `data.reason`
says what went wrong). TrueNAS revokes an API key that arrives over plain HTTP, so only
`wss://` is accepted here.

Everything the server sends is untrusted: a frame that is not JSON, not a JSON-RPC 2.0
response, too large, or cut short raises `TargetError` and drops the connection (the next
call opens a new one); a response with another id (a late, replayed or forged answer) and a
notification are skipped. No message of ours ever contains the API key or a CHAP secret:
both are masked in every error text, and neither object prints itself.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from rms.tomlconfig import build, read_toml, require
from rms.volumes.terms import valid_iqn_base
from volume_provider.target.model import MASK, TargetError

MAX_FRAME_BYTES = 4 << 20  # a query of a few hundred targets is well under 1 MiB
CALL_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
MAX_REASON_CHARS = 300


class MiddlewareError(TargetError):
    """The middleware answered a call with a JSON-RPC error; the connection is still good."""


TRUENAS_BASENAME = "iqn.2005-10.org.freenas.ctl"  # TrueNAS's default iSCSI base name
MAX_KEY_FILE = 4096  # a key is ~70 characters


class ApiKey:
    """A TrueNAS API key that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not value or not value.isprintable() or len(value) > 1024:
            raise TargetError("a TrueNAS API key must be 1-1024 printable characters")
        self._value = value

    @classmethod
    def from_file(cls, path: Path) -> ApiKey:
        """The key stored in a file (first line); TargetError naming the file, never the key."""
        try:
            with path.open("rb") as f:
                data = f.read(MAX_KEY_FILE + 1)
            text = data.decode("utf-8", errors="strict")
        except (OSError, UnicodeDecodeError) as e:
            raise TargetError(f"cannot read the TrueNAS API key file {path}: {e}") from None
        if len(data) > MAX_KEY_FILE:
            raise TargetError(f"the TrueNAS API key file {path} is over {MAX_KEY_FILE} bytes")
        return cls(text.splitlines()[0] if text.strip() else "")

    def reveal(self) -> str:
        """The key itself, for the one login call."""
        return self._value

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__


@dataclass(frozen=True)
class Endpoint:
    """Where the middleware is and how to trust it."""

    url: str
    api_key: ApiKey
    ca_file: Path | None = None  # None: the system trust store

    def __post_init__(self) -> None:
        if not self.url.startswith("wss://"):
            raise TargetError(
                f"TrueNAS middleware URL {self.url!r} must start with wss:// (TrueNAS revokes "
                "an API key sent over plain HTTP); use wss://HOST/api/current"
            )

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context that checks the middleware's certificate."""
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as e:
            raise TargetError(f"cannot load the CA file {self.ca_file}: {e}") from None


@dataclass(frozen=True)
class TrueNasSection:
    """`[truenas]` of /etc/volume-provider/truenas.toml (written by the TrueNAS app)."""

    url: str = "wss://127.0.0.1/api/current"
    api_key_file: Path = Path("/run/secrets/truenas-api-key")
    ca_file: str = ""  # empty: the system trust store
    parent_dataset: str = ""
    basename: str = TRUENAS_BASENAME  # iscsi.global.config's base name, checked at start

    def __post_init__(self) -> None:
        require(self.url.startswith("wss://"), "truenas.url must start with wss://")
        require(
            valid_iqn_base(self.basename),
            "truenas.basename must be an iqn. name (lower case, digits, . - :)",
        )
        if self.parent_dataset:  # empty is the default; load_settings requires a real one
            parts = self.parent_dataset.split("/")
            ok = len(parts) >= 2 and all(p and p not in (".", "..") for p in parts)
            require(ok, "truenas.parent_dataset must be POOL/DATASET[/...]")

    def endpoint(self) -> Endpoint:
        """The middleware endpoint, with the API key read from its file."""
        ca = Path(self.ca_file) if self.ca_file else None
        return Endpoint(self.url, ApiKey.from_file(self.api_key_file), ca)


@dataclass(frozen=True)
class TrueNasFile:
    """The whole truenas.toml."""

    truenas: TrueNasSection = field(default_factory=TrueNasSection)


def load_settings(path: Path) -> TrueNasSection:
    """Read and check truenas.toml; ConfigError naming the file, the key and the reason."""
    section = build(TrueNasFile, read_toml(path, required=True), source=str(path)).truenas
    require(bool(section.parent_dataset), f"{path}: truenas.parent_dataset is required")
    return section


def error_reason(error: object) -> str:
    """The human part of a JSON-RPC error object: data.reason, else message, else the code."""
    if not isinstance(error, dict):
        return "malformed error object"
    data = error.get("data")
    for text in (data.get("reason") if isinstance(data, dict) else None, error.get("message")):
        if isinstance(text, str) and text.strip():
            return text.strip()[:MAX_REASON_CHARS]
    return f"error code {error.get('code')!r}"[:MAX_REASON_CHARS]


class MiddlewareClient:
    """One logged-in WebSocket to the middleware; calls run one at a time."""

    def __init__(self, endpoint: Endpoint, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.skipped = 0  # responses with a foreign id and notifications, dropped

    async def call(self, method: str, *params: Any, secrets: Sequence[str] = ()) -> Any:
        """Call one middleware method; its result, or TargetError with every secret masked."""
        masks = (self.endpoint.api_key.reveal(), *secrets)
        async with self._lock:
            try:
                ws = await self._connected()
                return await self._roundtrip(ws, method, list(params))
            except MiddlewareError as e:
                raise MiddlewareError(str(e), *masks) from None
            except TargetError as e:
                await self.close()  # state unknown: the next call starts afresh
                raise TargetError(str(e), *masks) from None

    async def close(self) -> None:
        """Close the WebSocket and its HTTP session (the next call reconnects)."""
        ws, session, self._ws, self._session = self._ws, self._session, None, None
        if ws is not None:
            await ws.close()
        if session is not None:
            await session.close()

    async def _connected(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is not None and not self._ws.closed:
            return self._ws
        await self.close()
        self._session = aiohttp.ClientSession()
        try:
            self._ws = await asyncio.wait_for(
                self._session.ws_connect(
                    self.endpoint.url,
                    ssl=self.endpoint.ssl_context(),
                    max_msg_size=MAX_FRAME_BYTES,
                    autoping=True,
                ),
                CONNECT_TIMEOUT_S,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            reason = type(e).__name__ if isinstance(e, TimeoutError) else str(e)
            raise TargetError(f"cannot reach TrueNAS at {self.endpoint.url}: {reason}") from None
        key = self.endpoint.api_key.reveal()
        try:
            accepted = await self._roundtrip(self._ws, "auth.login_with_api_key", [key])
        except MiddlewareError as e:
            raise TargetError(f"TrueNAS login failed: {e}") from None
        if accepted is not True:
            raise TargetError(
                "TrueNAS refused the API key: check that it is valid and not revoked "
                "(Credentials > API Keys), then restart the Volume Provider"
            )
        return self._ws

    async def _roundtrip(
        self, ws: aiohttp.ClientWebSocketResponse, method: str, params: list[Any]
    ) -> Any:
        ident = next(self._ids)
        request = {"jsonrpc": "2.0", "id": ident, "method": method, "params": params}
        try:
            await ws.send_str(json.dumps(request))
            async with asyncio.timeout(self.timeout_s):
                while True:
                    reply = self._decode(await ws.receive(), method)
                    if reply is not None and reply.get("id") == ident:
                        return self._result(reply, method)
                    self.skipped += 1
        except TimeoutError:
            raise TargetError(
                f"TrueNAS did not answer {method} within {self.timeout_s} s"
            ) from None
        except (aiohttp.ClientError, ConnectionError) as e:
            raise TargetError(f"connection to TrueNAS lost during {method}: {e}") from None

    @staticmethod
    def _decode(msg: aiohttp.WSMessage, method: str) -> dict[str, Any] | None:
        """The response object of one frame; None for a notification; TargetError if bad."""
        if msg.type != aiohttp.WSMsgType.TEXT:
            what = "too large" if msg.type == aiohttp.WSMsgType.ERROR else msg.type.name.lower()
            raise TargetError(f"connection to TrueNAS lost during {method}: frame {what}")
        try:
            reply = json.loads(msg.data)
        except ValueError:
            raise TargetError(f"malformed reply from TrueNAS to {method}: not JSON") from None
        if not isinstance(reply, dict) or reply.get("jsonrpc") != "2.0":
            raise TargetError(f"malformed reply from TrueNAS to {method}: not JSON-RPC 2.0")
        return None if "id" not in reply else reply

    @staticmethod
    def _result(reply: dict[str, Any], method: str) -> Any:
        if "error" in reply:
            raise MiddlewareError(f"TrueNAS {method} failed: {error_reason(reply['error'])}")
        if "result" not in reply:
            raise TargetError(f"malformed reply from TrueNAS to {method}: no result or error")
        return reply["result"]
