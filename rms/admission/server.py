"""The guardian's admission server: a TCP listener driving a `Guardian` core.

It listens on the guardian's guest address, port `ADMISSION_PORT` (docs/management-vpns.md,
"Identifiers"), feeds each connection's bytes and wall-clock time to the core, performs the
`Send`/`Close` instructions in order, passes events on, and keeps one timer task armed at
the core's `next_timer()`. Every decision (who gets the slot, busy, refusal, timeout) is
the core's; OS errors on a connection are translated here into "the connection closed".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable

import structlog

from rms.admission.events import (
    Close,
    GuardianEvent,
    GuardianOutput,
    GuestDropped,
    GuestTurnedAway,
    Send,
    SlotFreed,
    SlotTaken,
)
from rms.admission.guardian import Guardian

__all__ = ["ADMISSION_PORT", "AdmissionServer"]

ADMISSION_PORT = 7946
READ_SIZE = 4096
QUIET_EVENTS = (
    GuestDropped,
    GuestTurnedAway,
    SlotFreed,
    SlotTaken,
)  # logged at debug: peers cause them

log = structlog.get_logger("rms.admission")


class AdmissionServer:
    """Serves one guardian core on one address; `start()` then `close()`, or `run()`."""

    def __init__(
        self,
        guardian: Guardian,
        *,
        on_event: Callable[[GuardianEvent], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.guardian = guardian
        self.on_event = on_event
        self._clock = clock
        self._log = log.bind(vpn=str(guardian.vpn_id))
        self._ids = itertools.count(1)
        self._writers: dict[int, asyncio.StreamWriter] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._timer: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port bound (useful when started on port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the admission server is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, host: str, port: int = ADMISSION_PORT) -> None:
        """Listen on host:port and arm the slot timer."""
        self._server = await asyncio.start_server(self._handle, host, port)
        self._timer = asyncio.create_task(self._timer_loop(), name="admission-timer")
        self._log.info("admission.listening", host=host, port=self.port)

    async def close(self) -> None:
        """Stop listening, end every connection and the timer; wait for all of them."""
        if self._server is not None:
            self._server.close()
        tasks = [t for t in (self._timer, *self._handlers) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._server, self._timer = None, None

    async def run(self, host: str, port: int = ADMISSION_PORT) -> None:
        """Serve until cancelled (the daemon's TaskGroup owns this task)."""
        await self.start(host, port)
        try:
            await asyncio.Future()
        finally:
            await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        conn = next(self._ids)
        self._writers[conn] = writer
        try:
            self._apply(self.guardian.connection_made(conn, self._clock()))
            await self._pump(conn, reader)
        finally:
            if conn in self._writers:  # the guest went away before the core ended it
                self._apply(self.guardian.connection_lost(conn, self._clock()))
                self._close(conn)
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            if task is not None:
                self._handlers.discard(task)

    async def _pump(self, conn: int, reader: asyncio.StreamReader) -> None:
        while conn in self._writers:
            try:
                data = await reader.read(READ_SIZE)
            except OSError:
                return
            if not data:
                return
            self._apply(self.guardian.data_received(conn, data, self._clock()))

    async def _timer_loop(self) -> None:
        while True:
            self._wake.clear()
            deadline = self.guardian.next_timer()
            delay = None if deadline is None else max(0.0, deadline - self._clock())
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                self._apply(self.guardian.handle_timer(self._clock()))

    def _apply(self, outputs: list[GuardianOutput]) -> None:
        for output in outputs:
            if isinstance(output, Send):
                writer = self._writers.get(output.conn)
                if writer is not None and not writer.is_closing():
                    writer.write(output.data)
            elif isinstance(output, Close):
                self._close(output.conn)
            else:
                self._report(output)
        self._wake.set()  # the slot's deadline may have moved

    def _close(self, conn: int) -> None:
        writer = self._writers.pop(conn, None)
        if writer is not None:
            writer.close()  # the transport still flushes what was written before

    def _report(self, event: GuardianEvent) -> None:
        level = self._log.debug if isinstance(event, QUIET_EVENTS) else self._log.info
        level("admission.event", kind=type(event).__name__, **_fields(event))
        if self.on_event is not None:
            self.on_event(event)


def _fields(event: GuardianEvent) -> dict[str, object]:
    """Loggable fields: connection, reason, the member's node id; never a key's secret."""
    fields: dict[str, object] = {"conn": getattr(event, "conn", None)}
    for name in ("reason", "retry_after_s"):
        if hasattr(event, name):
            fields[name] = getattr(event, name)
    refusal = getattr(event, "refusal", None)
    if refusal is not None:
        fields["code"], fields["text"] = refusal.code.value, refusal.text
    member = getattr(event, "member", None)
    if member is not None:
        fields["peer"] = member.node_id.hex()
    return fields
