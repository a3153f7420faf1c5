"""`PUT /v1/status/sections/{name}`: local services publish a section of `rms status`.

The Volume Provider publishes `volumes`, the CFS `pool`: they are other processes, and
`rms status` (and `--json`) should show them with the rest of the node. A section is a JSON
object of at most `MAX_SECTION_BYTES`, nested at most `MAX_DEPTH` deep; its name is
lowercase (`[a-z][a-z0-9_]*`, at most 32 characters) and may not be a base field or a
section the daemon itself provides. At most `MAX_SECTIONS` names are published. Each section
carries `published_age_s`, so a reader sees how fresh it is; a section not refreshed
within `STALE_AFTER_S` is shown with `"stale": true` (its publisher is probably down).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from rms.status import StatusBoard
from rms.wire.schema import within_depth

__all__ = ["MAX_SECTION_BYTES", "PublishedSections"]

MAX_SECTION_BYTES = 16 * 1024
MAX_DEPTH = 8
MAX_SECTIONS = 16
STALE_AFTER_S = 120.0
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


class PublishedSections:
    """The sections local services published, shown through the status board."""

    def __init__(self, board: StatusBoard, clock: Callable[[], float] = time.monotonic) -> None:
        self._board = board
        self._clock = clock
        self._values: dict[str, tuple[dict[str, Any], float]] = {}

    def publish(self, name: str, value: dict[str, Any]) -> None:
        """Publish or replace a section; ValueError says why it cannot be."""
        if not _NAME.fullmatch(name):
            raise ValueError("a section name is [a-z][a-z0-9_]*, at most 32 characters")
        if name not in self._values:
            if len(self._values) >= MAX_SECTIONS:
                raise ValueError(f"at most {MAX_SECTIONS} sections may be published")
            self._board.add_section(name, lambda: self._show(name))  # ValueError if taken
        self._values[name] = (value, self._clock())

    def _show(self, name: str) -> dict[str, Any]:
        value, at = self._values[name]
        age = self._clock() - at
        shown = {**value, "published_age_s": round(age, 1)}
        if age > STALE_AFTER_S:
            shown["stale"] = True
        return shown

    async def put(self, request: web.Request) -> web.Response:
        """PUT /v1/status/sections/{name}: the body is the section, a JSON object."""
        raw = await request.content.read(MAX_SECTION_BYTES + 1)
        if len(raw) > MAX_SECTION_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_SECTION_BYTES, actual_size=len(raw))
        value = _object(raw)
        try:
            self.publish(request.match_info["name"], value)
        except ValueError as e:
            raise web.HTTPConflict(text=str(e)) from None
        return web.json_response({"published": request.match_info["name"]})

    def routes(self) -> list[web.RouteDef]:
        """The publishing route."""
        return [web.put("/v1/status/sections/{name}", self.put)]


def _object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    if not isinstance(value, dict):
        raise web.HTTPBadRequest(text="a section is a JSON object")
    if not within_depth(value, MAX_DEPTH):
        raise web.HTTPBadRequest(text=f"a section nests at most {MAX_DEPTH} deep")
    return value
