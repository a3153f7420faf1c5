"""The newcomer's admission client: one exchange over TCP, and the loop over candidates.

`request_admission` connects to a guardian's guest address (port 7946 over the guest
WireGuard link; any address in tests), drives a `NewcomerSession` with the stream's bytes
and wall-clock time, and returns its outcome. `run_admission` drives an
`AdmissionPlanner`: it sleeps when told to wait and calls the caller's `attempt` for each
VPN to try, which brings the guest link up and down around `request_admission`. Every
decision is the cores'; connection errors become `Failed` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

from rms.admission.events import Close, Failed, NewcomerOutput, Outcome, Send
from rms.admission.newcomer import NewcomerSession
from rms.admission.planner import AdmissionPlanner, Attempt, C, ClockIsOff, Joined, NoVpnFits

__all__ = ["CONNECT_WITHIN_S", "request_admission", "run_admission"]

CONNECT_WITHIN_S = 10.0
READ_SIZE = 65536

log = structlog.get_logger("rms.admission")


async def request_admission(
    session: NewcomerSession,
    host: str,
    port: int,
    *,
    clock: Callable[[], float] = time.time,
    connect_within_s: float = CONNECT_WITHIN_S,
) -> Outcome:
    """Run one admission exchange with the guardian listening at host:port."""
    try:
        async with asyncio.timeout(connect_within_s):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        reason = f"cannot reach the guardian at {host}:{port}: {exc or type(exc).__name__}"
        return Failed(session.vpn_id, reason)
    try:
        outcome = await _exchange(session, reader, writer, clock)
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(connect_within_s):
                await writer.drain()  # the ack must leave before we hang up
        return outcome
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _exchange(
    session: NewcomerSession,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    clock: Callable[[], float],
) -> Outcome:
    _apply(session.connection_made(clock()), writer)
    while session.outcome is None:
        deadline = session.next_timer()
        delay = None if deadline is None else max(0.0, deadline - clock())
        try:
            async with asyncio.timeout(delay):
                data = await reader.read(READ_SIZE)
        except TimeoutError:
            _apply(session.handle_timer(clock()), writer)
            continue
        except OSError:
            data = b""
        if data:
            _apply(session.data_received(data, clock()), writer)
        else:
            _apply(session.connection_lost(clock()), writer)
    return session.outcome


def _apply(outputs: list[NewcomerOutput], writer: asyncio.StreamWriter) -> None:
    for output in outputs:
        if isinstance(output, Send) and not writer.is_closing():
            writer.write(output.data)
        elif not isinstance(output, Send | Close):
            log.info("admission.outcome", vpn=str(output.vpn_id), outcome=type(output).__name__)


async def run_admission(
    planner: AdmissionPlanner[C],
    attempt: Callable[[C], Awaitable[Outcome]],
    *,
    clock: Callable[[], float] = time.time,
) -> Joined | NoVpnFits | ClockIsOff:
    """Try the planner's candidates with `attempt` until one admits us or none is left."""
    while True:
        step = planner.next_step(clock())
        if isinstance(step, Joined | NoVpnFits | ClockIsOff):
            return step
        if isinstance(step, Attempt):
            outcome = await attempt(step.candidate)
            planner.record(outcome, clock())
        else:
            await asyncio.sleep(max(0.0, step.until - clock()))
