"""Who may talk to the control API: checked with real processes of other users."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rms.control.peer import AccessPolicy
from rms.control.server import ControlServer, create_app
from rms.status import NodeState, StatusBoard

NOBODY = 65534
ADMIN_GID = 4242  # a group id no account here uses; membership is all that matters

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)

# Runs as another user: one raw HTTP request, prints the status line or the errno name.
CLIENT = """
import socket, sys, errno
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(errno.errorcode[e.errno]); raise SystemExit(0)
s.sendall(b"GET /v1/status HTTP/1.0\\r\\nHost: rms\\r\\n\\r\\n")
print(s.makefile("rb").readline().decode().split(" ")[1])
"""


@pytest.fixture
async def socket_path() -> AsyncIterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="tc-ctl-"))
    base.chmod(0o755)
    board = StatusBoard("cd" * 32, "0", os.getpid(), "now")
    board.set_state(NodeState.RUNNING)
    path = base / "run" / "control.sock"
    server = ControlServer(create_app(board, AccessPolicy(ADMIN_GID), lambda: 1.0), path, None)
    await server.start()
    path.parent.chmod(0o755)
    try:
        yield path
    finally:
        await server.close()
        shutil.rmtree(base)


async def request_as(path: Path, *setpriv_args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "setpriv",
        *setpriv_args,
        sys.executable,
        "-I",
        "-S",
        "-c",
        CLIENT,
        str(path),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    return out.decode().strip()


async def test_root_is_served(socket_path: Path) -> None:
    assert await request_as(socket_path, "--reuid=0") == "200"


async def test_the_file_mode_keeps_other_users_out(socket_path: Path) -> None:
    answer = await request_as(
        socket_path, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"
    )
    assert answer == "EACCES"


async def test_peer_credentials_refuse_a_stranger_even_on_an_open_socket(socket_path: Path) -> None:
    socket_path.chmod(0o666)
    answer = await request_as(
        socket_path, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"
    )
    assert answer == "403"


async def test_admin_group_as_supplementary_group_is_served(socket_path: Path) -> None:
    socket_path.chmod(0o666)
    answer = await request_as(
        socket_path, f"--reuid={NOBODY}", f"--regid={NOBODY}", f"--groups={ADMIN_GID}"
    )
    assert answer == "200"


async def test_admin_group_as_primary_group_is_served(socket_path: Path) -> None:
    socket_path.chmod(0o666)
    answer = await request_as(
        socket_path, f"--reuid={NOBODY}", f"--regid={ADMIN_GID}", "--clear-groups"
    )
    assert answer == "200"


async def raw_exchange(path: Path, data: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 10)
    writer.close()
    await writer.wait_closed()
    return answer


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff" * 512 + b"\r\n\r\n",
        b"GET /v1/status HTTP/9.9\r\n\r\n",
        b"GET " + b"/a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/status HTTP/1.1\r\n" + b"X-Pad: " + b"y" * 70000 + b"\r\n\r\n",
    ],
)
async def test_malformed_requests_get_an_error_and_the_server_goes_on(
    socket_path: Path, garbage: bytes
) -> None:
    answer = await raw_exchange(socket_path, garbage)
    assert answer.startswith(b"HTTP/1.") and b" 200 " not in answer.split(b"\r\n")[0]
    ok = await raw_exchange(socket_path, b"GET /v1/status HTTP/1.0\r\nHost: rms\r\n\r\n")
    assert ok.startswith(b"HTTP/1.0 200") or ok.startswith(b"HTTP/1.1 200")


async def test_oversized_body_is_refused(socket_path: Path) -> None:
    body = b"x" * (128 * 1024)
    head = f"POST /v1/status HTTP/1.1\r\nHost: rms\r\nContent-Length: {len(body)}\r\n\r\n"
    answer = await raw_exchange(socket_path, head.encode() + body)
    assert answer.split(b"\r\n")[0].split(b" ")[1] in (b"405", b"413")


async def test_unknown_route_is_404(socket_path: Path) -> None:
    answer = await raw_exchange(socket_path, b"GET /v1/secrets HTTP/1.0\r\nHost: rms\r\n\r\n")
    assert b" 404 " in answer.split(b"\r\n")[0]
