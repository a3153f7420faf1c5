"""The asyncio UDP adapter of the DHT core: no protocol decision lives here (STYLE.md 2).

It feeds datagrams and timer ticks to a `DhtNode` with wall-clock time (`time.time()`: the
wire compares timestamps across machines), sends what the core returns, re-arms one timer
and hands `LookupDone` events to a callback. OS errors on send are translated here, once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

import structlog

from rms.dht.node import DhtNode
from rms.dht.types import LookupDone, Output, Send

__all__ = ["DhtProtocol", "serve"]

log = structlog.get_logger(__name__)


class DhtProtocol(asyncio.DatagramProtocol):
    """Runs one DHT core on one UDP socket."""

    def __init__(self, node: DhtNode, on_done: Callable[[LookupDone], None]) -> None:
        self.node = node
        self.on_done = on_done
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.send_errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport and arm the first timer."""
        # UDP endpoints give a datagram transport, though CPython 3.11's selector one does not
        # subclass asyncio.DatagramTransport: an isinstance check would refuse it.
        self.transport = cast("asyncio.DatagramTransport", transport)
        self._rearm()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        """Feed one datagram to the core."""
        self.run(self.node.datagram_received(data, (str(addr[0]), int(addr[1])), time.time()))

    def error_received(self, exc: Exception) -> None:
        """An ICMP error for an earlier send: the core's timeouts handle the peer."""
        self.send_errors += 1
        log.debug("dht.send_error", error=str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the timer."""
        if self._timer is not None:
            self._timer.cancel()

    def run(self, outputs: list[Output]) -> None:
        """Carry out the core's outputs and re-arm the timer."""
        for out in outputs:
            if isinstance(out, Send):
                self._send(out)
            else:
                self.on_done(out)
        self._rearm()

    def _send(self, send: Send) -> None:
        if self.transport is None:
            return
        try:
            self.transport.sendto(send.data, send.addr)
        except OSError as exc:
            self.send_errors += 1
            log.debug("dht.send_error", error=str(exc))

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        when = self.node.next_timer()
        if when is None:
            self._timer = None
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, when - time.time()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.run(self.node.handle_timer(time.time()))


async def serve(
    node: DhtNode, host: str, port: int, on_done: Callable[[LookupDone], None]
) -> tuple[asyncio.DatagramTransport, DhtProtocol]:
    """Bind a UDP socket at (host, port) and run `node` on it."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: DhtProtocol(node, on_done), local_addr=(host, port)
    )
    return transport, protocol
