"""POST /v1/contribution/measured on a real control socket: who may feed it, what it takes.

The route is how the Volume Provider tells its RMS what it really contributes; the entitlement
follows it. Callers are real processes of other users (setpriv), bodies go over the socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rms.config import Config, ContributionSection, NodeSection
from rms.entitlement.control import routes
from rms.entitlement.service import EntitlementService
from tests.integration.control_support import ADMIN_GID, open_control
from volume_provider.rmslink import RmsLink, measured_body

NOBODY = 65534
GIB = 2**30
ROUTE = "/v1/contribution/measured"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)

# Runs as another user: one raw HTTP POST of argv[2], prints the status code and the body.
CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = sys.argv[2].encode()
head = "POST %s HTTP/1.0\\r\\nHost: rms\\r\\nContent-Type: application/json\\r\\n" % sys.argv[3]
s.sendall(head.encode() + b"Content-Length: %d\\r\\n\\r\\n" % len(body) + body)
reply = s.makefile("rb").read().decode()
print(reply.split(" ")[1]); print(reply.split("\\r\\n\\r\\n", 1)[-1])
"""


@dataclass
class Node:
    socket: Path
    service: EntitlementService


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = Config(
        node=NodeSection(state_dir=tmp_path / "state"),
        contribution=ContributionSection(storage="20 GiB", cpu=1.0),
    )
    (tmp_path / "state").mkdir()
    service = EntitlementService(config)
    async with open_control(routes(service), "tc-measured-") as path:
        yield Node(path, service)


async def post_as(node: Node, body: str, *setpriv_args: str) -> tuple[str, str]:
    proc = await asyncio.create_subprocess_exec(
        "setpriv",
        *setpriv_args,
        sys.executable,
        "-I",
        "-S",
        "-c",
        CLIENT,
        str(node.socket),
        body,
        ROUTE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    code, _, text = out.decode().partition("\n")
    return code, text


def report(**fields: Any) -> str:
    return json.dumps({"capacity_bytes": 5 * GIB, "leased_bytes": GIB, **fields})


ADMIN = (f"--reuid={NOBODY}", f"--regid={NOBODY}", f"--groups={ADMIN_GID}")
STRANGER = (f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")


async def test_an_admin_feeds_the_measurement_and_the_entitlement_follows(node: Node) -> None:
    code, text = await post_as(node, report(), *ADMIN)
    assert code == "200", text
    got = json.loads(text)
    assert got["contribution"]["capacity_bytes"] == 5 * GIB
    assert got["contribution"]["verified_storage_bytes"] == 5 * GIB
    assert got["entitlement"]["storage_bytes"] == GIB  # 5 GiB x 2/5 x 1/2 (probation)


async def test_a_caller_outside_the_admin_group_is_refused_and_changes_nothing(
    node: Node,
) -> None:
    code, _ = await post_as(node, report(capacity_bytes=0), *STRANGER)
    assert code == "403"
    assert node.service.contribution.capacity_bytes is None
    assert node.service.snapshot()["entitlement"]["storage_bytes"] == 4 * GIB


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        "{}",
        '{"capacity_bytes": 1}',
        report(capacity_bytes=-1),
        report(leased_bytes=-1),
        report(capacity_bytes=2**63),
        report(capacity_bytes=1e30),
        report(capacity_bytes="20 GiB"),
        report(capacity_bytes=None),
        report(audited_bytes=2 * GIB),  # more audited than leased
        report(uid=0),
        report(pad="x" * 5000),  # over the route's 4 KiB
    ],
)
async def test_bad_reports_are_refused_and_change_nothing(node: Node, body: str) -> None:
    code, _ = await post_as(node, body, *ADMIN)
    assert code in ("400", "413")
    assert node.service.contribution.capacity_bytes is None
    assert node.service.snapshot()["entitlement"]["storage_bytes"] == 4 * GIB


async def test_the_providers_own_link_feeds_the_route(node: Node) -> None:
    link = RmsLink(node.socket)
    await link.report(measured_body(2 * GIB, GIB, GIB // 2, 100 * GIB))
    c = node.service.contribution
    assert (c.capacity_bytes, c.leased_bytes, c.audited_bytes) == (2 * GIB, GIB, None)
    assert node.service.snapshot()["entitlement"]["storage_bytes"] == 2 * GIB * 2 // 10
