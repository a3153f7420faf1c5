"""The userspace backend's UAPI client and process handling, against scripted sockets.

These check our side of the boundary (bounded reads, timeouts, error translation, refusing
to stop a stranger, cleaning up after a failed start); wireguard-go itself is tested in
tests/integration/test_wg_userspace.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import ip_interface
from pathlib import Path

import pytest

from rms.wg import uapi
from rms.wg.changes import LinkChange, SetListenPort, SetPrivateKey
from rms.wg.errors import InterfaceNotFound, UapiError, WireGuardError, WireGuardUnavailable
from rms.wg.keys import WgPrivateKey
from rms.wg.links import LinkInfo, Links
from rms.wg.userspace import UserspaceDriver
from tests.unit.test_wg_uapi import RECORDED

PRIV = WgPrivateKey(bytes(range(32)))
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class StubLinks(Links):
    """Links of a namespace where the TUN device is up with one address."""

    applied: list[tuple[str, tuple[LinkChange, ...]]] = field(default_factory=list)

    async def read(self, name: str) -> LinkInfo | None:
        return LinkInfo(3, "tun", True, frozenset({ip_interface("fd00::1/64")}))

    async def apply(self, name: str, changes: tuple[LinkChange, ...]) -> None:
        self.applied.append((name, changes))


@dataclass
class Server:
    requests: list[bytes] = field(default_factory=list)


StartServer = Callable[[Handler], Awaitable[Server]]


@pytest.fixture
async def uapi_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    servers: list[asyncio.Server] = []

    async def start(answer: Handler) -> Server:
        record = Server()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                record.requests.append(await reader.readuntil(b"\n\n"))
                with contextlib.suppress(ConnectionError):
                    await answer(reader, writer)
            finally:
                writer.close()

        servers.append(await asyncio.start_unix_server(handle, path=str(tmp_path / "wg0.sock")))
        return record

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def replying(data: bytes, delay: float = 0.0) -> Handler:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay)
        writer.write(data)
        await writer.drain()

    return answer


def driver(tmp_path: Path, io_timeout: float = 5.0) -> UserspaceDriver:
    return UserspaceDriver(run_dir=tmp_path, links=StubLinks(), io_timeout=io_timeout)


async def test_get_reads_state_and_link(tmp_path: Path, uapi_server: StartServer) -> None:
    server = await uapi_server(replying(RECORDED))
    state = await driver(tmp_path).get("wg0")
    assert server.requests == [uapi.GET_REQUEST]
    assert state.public_key == PRIV.public_key() and len(state.peers) == 2
    assert state.up and state.addresses == frozenset({ip_interface("fd00::1/64")})


async def test_apply_sends_one_set_and_passes_link_changes_on(
    tmp_path: Path, uapi_server: StartServer
) -> None:
    server = await uapi_server(replying(b"errno=0\n\n"))
    wgd = driver(tmp_path)
    await wgd.apply("wg0", (SetListenPort(5),))
    assert server.requests == [b"set=1\nlisten_port=5\n\n"]


async def test_a_refused_set_names_the_change_not_the_key(
    tmp_path: Path, uapi_server: StartServer
) -> None:
    await uapi_server(replying(b"errno=-98\n\n"))
    with pytest.raises(UapiError) as caught:
        await driver(tmp_path).apply("wg0", (SetPrivateKey(PRIV), SetListenPort(5)))
    text = str(caught.value)
    assert "EADDRINUSE" in text and "set listen port 5" in text and "set private key" in text
    assert PRIV.hex() not in text


@pytest.mark.parametrize(
    ("answer", "error", "said"),
    [
        (replying(b"errno=0\nerrno=0"), UapiError, "closed the connection"),
        (replying(b"\xff\xfe garbage\n\n"), UapiError, "ASCII"),
        (replying(b"x" * (uapi.MAX_RESPONSE + 70000)), UapiError, "larger than"),
        (replying(b"errno=0\n\n", delay=2.0), WireGuardError, "no UAPI answer within"),
    ],
)
async def test_bad_servers_give_clean_errors(
    tmp_path: Path,
    uapi_server: StartServer,
    answer: Handler,
    error: type[Exception],
    said: str,
) -> None:
    await uapi_server(answer)
    with pytest.raises(error, match=said):
        await driver(tmp_path, io_timeout=0.3).get("wg0")


async def test_nothing_there(tmp_path: Path) -> None:
    wgd = driver(tmp_path)
    assert not await wgd.exists("wg0")
    assert await wgd.listener_pid("wg0") is None
    assert await wgd.names() == []
    assert not await wgd.delete("wg0")
    with pytest.raises(InterfaceNotFound):
        await wgd.get("wg0")


async def test_a_stale_socket_is_absent_and_delete_removes_it(tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "wg0.sock"))
    stale.close()  # the file stays, nobody listens: what a SIGKILLed wireguard-go leaves
    wgd = driver(tmp_path)
    assert not await wgd.exists("wg0")
    assert not await wgd.delete("wg0")
    assert not (tmp_path / "wg0.sock").exists()


async def test_a_socket_owned_by_another_program_is_not_stopped(
    tmp_path: Path, uapi_server: StartServer
) -> None:
    await uapi_server(replying(b"errno=0\n\n"))
    wgd = driver(tmp_path)
    assert await wgd.listener_pid("wg0") == os.getpid()
    assert await wgd.names() == ["wg0"]
    with pytest.raises(WireGuardError, match="not stopping it"):
        await wgd.delete("wg0")
    with pytest.raises(WireGuardError, match="already exists"):
        await wgd.create("wg0", PRIV, 0)


async def test_a_missing_binary_is_reported(tmp_path: Path) -> None:
    wgd = UserspaceDriver(binary="no-such-wireguard-go", run_dir=tmp_path, links=StubLinks())
    with pytest.raises(WireGuardUnavailable, match="not installed"):
        await wgd.create("wg0", PRIV, 0)


async def test_a_program_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    script = tmp_path / "fake-wg"
    script.write_text('#!/bin/sh\necho "ERROR: cannot create TUN device for $2"\nexit 3\n')
    script.chmod(0o755)
    wgd = UserspaceDriver(
        binary=str(script), run_dir=tmp_path, log_dir=tmp_path / "log", links=StubLinks()
    )
    with pytest.raises(WireGuardError, match="status 3 while starting wg0: ERROR: cannot create"):
        await wgd.create("wg0", PRIV, 0)


async def test_a_program_that_never_listens_is_stopped(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    script = tmp_path / "fake-wg"
    script.write_text(f"#!/bin/sh\necho $$ > {marker}\nexec sleep 30\n")
    script.chmod(0o755)
    wgd = UserspaceDriver(
        binary=str(script), run_dir=tmp_path, links=StubLinks(), start_timeout=0.5
    )
    with pytest.raises(WireGuardError, match="did not open"):
        await wgd.create("wg0", PRIV, 0)
    pid = int(marker.read_text())
    assert not Path(f"/proc/{pid}").exists(), "the failed start left its process running"
