"""The provider's protocol port: one TCP exchange per claim, renew or release.

A client connects to a management address of the provider (port 7950), sends one
length-prefixed frame (rms.net.framing) holding one signed `volumes.*` envelope, reads one
frame back, and the connection closes (docs/volumes.md, "Transport and keys"). Whatever a
peer sends is survived: a header announcing more than `MAX_MESSAGE`, bytes that never make
a frame within `READ_TIMEOUT_S`, a stream that ends early, or a frame the core drops —
each closes that one connection and is counted; the server goes on. At most
`MAX_CONNECTIONS` exchanges run at once; more are closed at once.

The listeners follow the node's management addresses (`set_addresses`): a VPN joined adds a
listener, a VPN left closes one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from ipaddress import IPv6Address

import structlog

from rms.net.framing import FrameReader, encode_frame
from rms.volumes import MAX_MESSAGE

__all__ = ["MAX_CONNECTIONS", "READ_TIMEOUT_S", "ClaimServer"]

READ_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 64
Handler = Callable[[bytes], Awaitable[bytes | None]]

log = structlog.get_logger("volume_provider.server")


class ClaimServer:
    """TCP listeners on the management addresses, each exchange handed to `handle`."""

    def __init__(self, handle: Handler, port: int) -> None:
        self._handle = handle
        self.port = port
        self._servers: dict[IPv6Address, asyncio.Server] = {}
        self._active = 0
        self.counts: Counter[str] = Counter()

    @property
    def addresses(self) -> list[IPv6Address]:
        """Where it listens now."""
        return sorted(self._servers)

    async def set_addresses(self, addresses: Iterable[IPv6Address]) -> None:
        """Listen on exactly these addresses (start new listeners, close gone ones)."""
        wanted = set(addresses)
        for gone in set(self._servers) - wanted:
            self._servers.pop(gone).close()
        for address in sorted(wanted - set(self._servers)):
            try:
                self._servers[address] = await asyncio.start_server(
                    self._client, str(address), self.port, limit=MAX_MESSAGE * 2
                )
            except OSError as e:  # not yet usable (e.g. the VPN is still coming up): next time
                log.warning("server.bind_failed", address=str(address), reason=e.strerror)

    async def close(self) -> None:
        """Close every listener."""
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._active >= MAX_CONNECTIONS:
            self.counts["busy"] += 1
            writer.close()
            return
        self._active += 1
        try:
            await self._exchange(reader, writer)
        except (OSError, TimeoutError) as e:
            self.counts["connection_failed"] += 1
            log.debug("server.connection_failed", reason=type(e).__name__)
        except Exception:  # our bug, not the peer's: logged, and the server goes on
            self.counts["internal_error"] += 1
            log.exception("server.internal_error")
        finally:
            self._active -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frame = await _read_one(reader)
        if isinstance(frame, str):
            self.counts[frame] += 1
            log.debug("server.dropped", reason=frame)
            return
        reply = await self._handle(frame)
        if reply is None:
            self.counts["no_reply"] += 1
            return
        writer.write(encode_frame(reply, MAX_MESSAGE))
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()
        self.counts["answered"] += 1

    def status(self) -> dict[str, object]:
        """Listeners and connection counters."""
        return {
            "listening": [f"[{a}]:{self.port}" for a in self.addresses],
            "connections": dict(sorted(self.counts.items())),
        }


async def _read_one(reader: asyncio.StreamReader) -> bytes | str:
    """One frame, or why there is none: oversized, timeout, or truncated."""
    frames = FrameReader(MAX_MESSAGE)
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            while True:
                chunk = await reader.read(MAX_MESSAGE + 4)
                if not chunk:
                    return "truncated"
                found = frames.feed(chunk)
                if frames.error is not None:
                    return "oversized"
                if found:
                    return found[0]
    except TimeoutError:
        return "timeout"
