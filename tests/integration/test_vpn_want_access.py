"""`POST /v1/vpns/want` on the real control socket: only root and the admin group may raise
the count, checked with a process of another user (the route's other bad input is in
tests/unit/test_vpn_want.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rms.config import Config, DiscoverySection, VpnSection
from rms.identity import NodeIdentity
from rms.vpn.manager import VpnManager
from tests.integration.control_support import ADMIN_GID, open_control
from tests.integration.test_control_access import NOBODY

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)

# Runs as another user: one raw POST, prints the status code.
CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = b'{"vpns": 4}'
s.sendall(b"POST /v1/vpns/want HTTP/1.0\\r\\nHost: rms\\r\\nContent-Type: application/json\\r\\n"
          b"Content-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
print(s.makefile("rb").readline().decode().split(" ")[1])
"""


@pytest.fixture
async def served() -> AsyncIterator[tuple[Path, VpnManager]]:
    config = Config(vpn=VpnSection(public_ips=("198.18.0.11",)), discovery=DiscoverySection())
    manager = VpnManager(config, NodeIdentity.from_seed(bytes([3]) * 32))
    async with open_control(manager.routes(), "tc-want-") as path:
        yield path, manager


async def post_as(path: Path, *setpriv_args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "setpriv", *setpriv_args, sys.executable, "-I", "-S", "-c", CLIENT, str(path),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    return out.decode().strip()


async def test_a_stranger_cannot_raise_the_count(served: tuple[Path, VpnManager]) -> None:
    path, manager = served
    answer = await post_as(path, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
    assert answer == "403"
    assert (manager.want.value, manager.want.source) == (2, "policy")


async def test_an_admin_can(served: tuple[Path, VpnManager]) -> None:
    path, manager = served
    answer = await post_as(path, f"--reuid={NOBODY}", f"--regid={NOBODY}", f"--groups={ADMIN_GID}")
    assert answer == "200"
    assert (manager.want.value, manager.want.source) == (4, "request")
