"""Member-to-member RPC for roster replication: a TCP adapter around a `RosterSync` core.

Each member listens on its management address, port `RPC_PORT` (docs/management-vpns.md,
"Identifiers"). A message travels as one frame (rms.net) on a short-lived connection: the
sync protocol is one-way messages whose answers are messages too, and gossip tolerates a
lost one, so there is no request/response pairing to keep. Inbound connections are capped;
outbound messages wait in a bounded queue served by a few sender tasks, and are dropped
(counted) when the queue is full or the member cannot be reached. Every decision is the
core's; this module only moves frames and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Callable

import structlog

from rms.identity import node_id_of
from rms.membership.events import Deliver, MessageDropped, SyncOutput
from rms.membership.sync import RosterSync
from rms.net.framing import MAX_FRAME
from rms.net.streams import StreamError, read_frame, write_frame
from rms.overlay import member_address

__all__ = ["RPC_PORT", "AddressOf", "RosterSyncService", "member_rpc_address"]

RPC_PORT = 7947
MAX_INBOUND = 32  # concurrent inbound connections; members are few
QUEUE_SIZE = 256
SENDERS = 4
IO_WITHIN_S = 5.0

AddressOf = Callable[[bytes], tuple[str, int] | None]
log = structlog.get_logger("rms.membership")


def member_rpc_address(vpn_id: uuid.UUID) -> AddressOf:
    """Where a member of `vpn_id` listens: its management address, port 7947."""

    def address_of(node_key: bytes) -> tuple[str, int]:
        return str(member_address(vpn_id, node_id_of(node_key)).ip), RPC_PORT

    return address_of


class RosterSyncService:
    """Runs one VPN's roster sync core over TCP; `start()` then `close()`, or `run()`."""

    def __init__(
        self,
        core: RosterSync,
        *,
        address_of: AddressOf,
        on_event: Callable[[SyncOutput], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.core = core
        self.on_event = on_event
        self._address_of = address_of
        self._clock = clock
        self._log = log.bind(vpn=str(core.ledger.vpn_id))
        self._queue: asyncio.Queue[Deliver] = asyncio.Queue(QUEUE_SIZE)
        self._wake = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._inbound: set[asyncio.Task[None]] = set()
        self.stats: Counter[str] = Counter()

    @property
    def port(self) -> int:
        """The port bound (useful when started on port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the roster RPC server is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, host: str, port: int = RPC_PORT) -> None:
        """Listen on host:port, arm the core's timer and start the senders."""
        self._server = await asyncio.start_server(self._handle, host, port)
        self._tasks = [asyncio.create_task(self._timer_loop(), name="roster-timer")]
        self._tasks += [
            asyncio.create_task(self._sender(), name=f"roster-sender-{i}") for i in range(SENDERS)
        ]
        self._log.info("roster_rpc.listening", host=host, port=self.port)

    async def close(self) -> None:
        """Stop listening and every task of this service; wait for all of them."""
        if self._server is not None:
            self._server.close()
        tasks = [*self._tasks, *self._inbound]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._server, self._tasks = None, []

    async def run(self, host: str, port: int = RPC_PORT) -> None:
        """Serve until cancelled (the daemon's TaskGroup owns this task)."""
        await self.start(host, port)
        try:
            await asyncio.Future()
        finally:
            await self.close()

    def submit(self, outputs: list[SyncOutput]) -> None:
        """Carry out what a local call on the core returned (announce, request_*)."""
        for output in outputs:
            if isinstance(output, Deliver):
                self._enqueue(output)
            else:
                self._report(output)
        self._wake.set()  # the core's next timer may have moved

    def _enqueue(self, deliver: Deliver) -> None:
        try:
            self._queue.put_nowait(deliver)
        except asyncio.QueueFull:
            self.stats["send_queue_full"] += 1

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._inbound) >= MAX_INBOUND:
            self.stats["inbound_refused"] += 1
            writer.close()
            return
        self._inbound.add(task)
        try:
            while (frame := await read_frame(reader, MAX_FRAME, IO_WITHIN_S)) is not None:
                self.submit(self.core.message_received(frame, self._clock()))
        except StreamError as exc:
            self.stats["inbound_broken"] += 1
            self._log.debug("roster_rpc.inbound_dropped", reason=str(exc))
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._inbound.discard(task)

    async def _sender(self) -> None:
        while True:
            deliver = await self._queue.get()
            address = self._address_of(deliver.to)
            if address is None:
                self.stats["no_address"] += 1
                continue
            try:
                await self._send(address, deliver.data)
                self.stats["sent"] += 1
            except (OSError, TimeoutError, StreamError) as exc:
                self.stats["send_failed"] += 1
                self._log.debug(
                    "roster_rpc.send_failed", peer=node_id_of(deliver.to).hex(), reason=str(exc)
                )

    async def _send(self, address: tuple[str, int], data: bytes) -> None:
        async with asyncio.timeout(IO_WITHIN_S):
            _, writer = await asyncio.open_connection(*address)
        try:
            await write_frame(writer, data, MAX_FRAME, IO_WITHIN_S)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _timer_loop(self) -> None:
        while True:
            self._wake.clear()
            delay = max(0.0, self.core.next_timer() - self._clock())
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                self.submit(self.core.handle_timer(self._clock()))

    def _report(self, event: SyncOutput) -> None:
        if isinstance(event, MessageDropped):
            self._log.debug("roster_rpc.dropped", reason=event.reason)
        else:
            self._log.info("roster.event", kind=type(event).__name__, seq=_seq(event))
        if self.on_event is not None:
            self.on_event(event)


def _seq(event: SyncOutput) -> int | None:
    roster = getattr(event, "roster", None)
    return None if roster is None else int(roster.seq)
