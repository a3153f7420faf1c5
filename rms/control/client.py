"""The control API client the CLI, the web UI and the other services use to talk to the RMS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

MAX_RESPONSE_BYTES = 4 * 1024 * 1024


class DaemonUnavailable(Exception):
    """The daemon cannot be reached; the message is one line a person can act on."""


class ControlError(Exception):
    """The daemon answered, but with an error."""


class ControlClient:
    """Talks HTTP over the RMS's unix socket."""

    def __init__(self, socket_path: Path, timeout: float = 5.0) -> None:
        self._path = socket_path
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def status(self) -> dict[str, Any]:
        """The node's whole status (GET /v1/status)."""
        return await self.get_json("/v1/status")

    async def get_json(self, route: str) -> dict[str, Any]:
        """GET a route and return its JSON object."""
        return await self._request("GET", route)

    async def post_json(self, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST to a route (with an optional JSON body) and return its JSON object."""
        return await self._request("POST", route, body)

    async def put_json(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT a JSON body to a route and return its JSON object."""
        return await self._request("PUT", route, body)

    async def _request(
        self, method: str, route: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if not self._path.exists():
            raise DaemonUnavailable(f"daemon not running (no control socket at {self._path})")
        connector = aiohttp.UnixConnector(path=str(self._path))
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=self._timeout) as session,
                session.request(method, f"http://rms{route}", json=body) as resp,
            ):
                answer = await resp.content.read(MAX_RESPONSE_BYTES + 1)
                return _parse(resp.status, answer)
        except PermissionError:
            raise ControlError(
                f"permission denied on {self._path}: run as root or join the admin group"
            ) from None
        except (aiohttp.ClientConnectionError, ConnectionError, FileNotFoundError):
            raise DaemonUnavailable(
                f"daemon not running (nothing answers on {self._path})"
            ) from None
        except TimeoutError:
            raise DaemonUnavailable(f"daemon not answering on {self._path}") from None


def _parse(status: int, body: bytes) -> dict[str, Any]:
    if len(body) > MAX_RESPONSE_BYTES:
        raise ControlError("control API answer is too large")
    if status not in (200, 202):
        text = body.decode("utf-8", "replace").strip()[:200]
        raise ControlError(f"control API refused ({status}): {text}")
    try:
        value = json.loads(body)
    except ValueError:
        raise ControlError("control API answered with malformed JSON") from None
    if not isinstance(value, dict):
        raise ControlError("control API answered with something other than an object")
    return value
