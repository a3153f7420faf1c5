"""The admission adapters over real loopback TCP: racing newcomers, junk, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import structlog

from rms.admission.client import request_admission, run_admission
from rms.admission.events import (
    Admitted,
    Failed,
    GuardianEvent,
    GuestTurnedAway,
    MemberAdmitted,
    Outcome,
    SlotTaken,
    SlotTimedOut,
)
from rms.admission.guardian import Guardian
from rms.admission.newcomer import session_for
from rms.admission.planner import AdmissionPlanner, Joined
from rms.admission.server import AdmissionServer
from rms.net.framing import FrameReader, encode_frame
from rms.net.streams import read_frame, write_frame
from rms.policy import Policy
from rms.wire import Accepted, Decoder, encode
from rms.wire.messages.admission import HELLO, Hello, Refuse
from rms.wire.messages.node import PING, Ping
from tests.admission_support import GUARDIAN, VPN_ID, Record, Vpn, found, node, place

HOST = "127.0.0.1"
FAST = Policy(guest_backoff_initial_s=0.05, guest_backoff_max_s=0.4, guest_slot_timeout_s=3.0)
QUICK = Policy(guest_slot_timeout_s=0.5)  # a guest that goes quiet is cut off soon


@dataclass
class Running:
    server: AdmissionServer
    vpn: Vpn
    events: list[GuardianEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, event: GuardianEvent) -> None:
        self.events.append(event)
        self.changed.set()

    async def until(self, kind: type, count: int = 1, within_s: float = 10) -> None:
        """Wait until the guardian reported `count` events of this kind."""
        async with asyncio.timeout(within_s):
            while sum(isinstance(e, kind) for e in self.events) < count:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def guardian_server(policy: Policy = FAST) -> AsyncIterator[Running]:
    vpn = found(policy, now=time.time())
    server = AdmissionServer(Guardian(GUARDIAN, vpn.issuer, policy=policy))
    running = Running(server, vpn)
    server.on_event = running.record
    await server.start(HOST, 0)
    try:
        yield running
    finally:
        await server.close()


async def delaying_proxy(port: int, delay_s: float) -> asyncio.Server:
    """A TCP proxy to `port` that holds each chunk from the guardian for `delay_s`."""

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                await asyncio.sleep(delay)
                dst.write(data)
                await dst.drain()
        dst.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, port)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(pipe(reader, up_writer, 0.0), name="proxy-up")
            tg.create_task(pipe(up_reader, writer, delay_s), name="proxy-down")

    return await asyncio.start_server(handle, HOST, 0)


def attempt_at(n: int, port: int, policy: Policy = FAST) -> Callable[[Record], Awaitable[Outcome]]:
    async def attempt(record: Record) -> Outcome:
        session = session_for(
            record, node(n), location=place(n), network=place(100 + n), policy=policy
        )
        return await request_admission(session, HOST, port)

    return attempt


async def test_two_racing_newcomers_both_end_admitted() -> None:
    async with guardian_server() as running:
        proxy = await delaying_proxy(running.server.port, 0.3)
        async with proxy:
            slow_port = proxy.sockets[0].getsockname()[1]
            slow = run_admission(
                AdmissionPlanner([Record()], rng=random.Random(1), policy=FAST),
                attempt_at(5, slow_port),
            )
            fast = run_admission(
                AdmissionPlanner([Record()], rng=random.Random(2), policy=FAST),
                attempt_at(6, running.server.port),
            )
            first = asyncio.create_task(slow, name="newcomer-5")
            await running.until(SlotTaken)  # newcomer 5 holds the slot, its bytes delayed
            second = await fast
            joined = await first
            await running.until(MemberAdmitted, 2)  # the guardian read both acks
    assert isinstance(joined, Joined) and isinstance(second, Joined)
    a, b = joined.admitted, second.admitted
    assert any(isinstance(e, GuestTurnedAway) and e.reason == "slot" for e in running.events)
    admitted = [e.member.node_key for e in running.events if isinstance(e, MemberAdmitted)]
    assert admitted == [node(5).public_key, node(6).public_key]
    roster = running.vpn.roster.roster
    assert roster.keys() == {GUARDIAN.public_key, node(5).public_key, node(6).public_key}
    assert b.roster == running.vpn.roster and roster.seq == 3
    assert a.wg_private_key != b.wg_private_key
    for got in (a, b):
        entry = roster.member(got.member.node_key)
        assert entry is not None and entry.wg_public_key == got.wg_private_key.public_key()


async def test_the_server_logs_events_and_never_the_minted_key() -> None:
    async with guardian_server() as running:
        session = session_for(Record(), node(7), location=place(7), network=place(107))
        with structlog.testing.capture_logs() as logs:
            outcome = await request_admission(session, HOST, running.server.port)
            await running.until(MemberAdmitted)
    assert isinstance(outcome, Admitted)
    kinds = [e.get("kind") for e in logs if e["event"] == "admission.event"]
    assert kinds == ["SlotTaken", "GuestOffered", "MemberAdmitted", "SlotFreed"]
    secret = outcome.wg_private_key.hex()
    assert all(secret not in str(entry) for entry in logs)
    assert all(e.get("vpn") == str(VPN_ID) for e in logs if e["event"] == "admission.event")


async def raw(port: int, data: bytes, *, read: bool = True) -> bytes:
    """Send raw bytes to the server, then read until it hangs up."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(data)
        await writer.drain()
        if not read:
            return b""
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@pytest.mark.parametrize(
    "junk",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"\xff\xff\xff\xff",
        encode_frame(b"not an envelope at all"),
        encode_frame(encode(node(9), PING, Ping(b"x").body(), time.time())),
        encode_frame(bytes(300))[:100],
        b"",
    ],
    ids=["http", "oversized", "not-an-envelope", "wrong-type", "cut-frame", "silence"],
)
async def test_junk_over_tcp_never_stops_the_server(junk: bytes) -> None:
    async with guardian_server(QUICK) as running:
        port = running.server.port
        answer = await raw(port, junk)
        frames = FrameReader().feed(answer)
        assert frames  # at least the challenge, before the junk was read
        session = session_for(Record(), node(7), location=place(7), network=place(107))
        outcome = await request_admission(session, HOST, port)
        assert isinstance(outcome, Admitted)
        await running.until(MemberAdmitted)


async def test_a_silent_guest_is_cut_off_when_the_slot_times_out() -> None:
    policy = Policy(guest_slot_timeout_s=0.3)
    async with guardian_server(policy) as running:
        started = time.monotonic()
        answer = await raw(running.server.port, b"")
        elapsed = time.monotonic() - started
        _, refusal = FrameReader().feed(answer)
        result = Decoder().decode(refusal, time.time())
        assert isinstance(result, Accepted)
        assert Refuse.from_envelope(result.envelope).code == "timeout"
        assert 0.25 <= elapsed < 3
        assert any(isinstance(e, SlotTimedOut) for e in running.events)
        assert running.server.guardian.slot_holder is None


async def test_a_replayed_hello_over_tcp_gets_nothing() -> None:
    async with guardian_server() as running:
        port = running.server.port
        reader, writer = await asyncio.open_connection(HOST, port)
        frame = await read_frame(reader, within_s=5)
        assert frame is not None
        hello = Hello(bytes(16), place(8), place(108)).body()  # not this connection's challenge
        await write_frame(writer, encode(node(8), HELLO, hello, time.time()), within_s=5)
        refusal = await read_frame(reader, within_s=5)
        assert refusal is not None
        assert await read_frame(reader, within_s=5) is None
        writer.close()
        await writer.wait_closed()
        assert not running.vpn.roster.roster.has(node(8).public_key)


async def test_unreachable_guardian_is_a_failure_not_an_exception() -> None:
    async with guardian_server() as running:
        port = running.server.port
    session = session_for(Record(), node(7), location=place(7), network=place(107))
    outcome = await request_admission(session, HOST, port, connect_within_s=2)
    assert isinstance(outcome, Failed) and "cannot reach the guardian" in outcome.reason


async def test_frames_round_trip_over_a_socket() -> None:
    received: list[bytes | None] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (frame := await read_frame(reader, within_s=5)) is not None:
            received.append(frame)
            await write_frame(writer, frame[::-1], within_s=5)
        writer.close()

    server = await asyncio.start_server(echo, HOST, 0)
    async with server:
        reader, writer = await asyncio.open_connection(HOST, server.sockets[0].getsockname()[1])
        for payload in (b"", b"abc", bytes(60_000)):
            await write_frame(writer, payload, within_s=5)
            assert await read_frame(reader, within_s=5) == payload[::-1]
        writer.close()
        await writer.wait_closed()
    assert received == [b"", b"abc", bytes(60_000)]
