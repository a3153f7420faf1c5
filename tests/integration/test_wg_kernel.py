"""The kernel backend against the real kernel, each check in a throwaway network namespace.

The project's machines have no WireGuard module, so what runs here is the "not available"
path: the link type and the generic netlink family are missing, `select_driver("auto")`
falls back to userspace and `select_driver("kernel")` says why it cannot. On a machine with
the module the round trip below runs instead (it has never run on the project's machines).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="netlink link creation needs root"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare missing"),
    pytest.mark.timeout(60),
]
ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import asyncio, json
from rms.wg.changes import SetListenPort
from rms.wg.driver import select_driver
from rms.wg.errors import WireGuardError
from rms.wg.kernel import KernelDriver
from rms.wg.keys import WgPrivateKey

async def outcome(coro):
    try:
        found = await coro
    except WireGuardError as e:
        return f"{type(e).__name__}: {e}"
    return getattr(found, "kind", "ok")

async def main():
    kd = KernelDriver()
    return {
        "probe": await outcome(kd.probe()),
        "create": await outcome(kd.create("tcwk0", WgPrivateKey.generate(), 0)),
        "set": await outcome(kd.apply("tcwk0", (SetListenPort(1),))),
        "exists": await kd.exists("tcwk0"),
        "auto": await outcome(select_driver("auto")),
        "kernel": await outcome(select_driver("kernel")),
    }

print(json.dumps(asyncio.run(main())))
"""

ROUND_TRIP = """
import asyncio, json
from ipaddress import ip_interface, ip_network
from rms.wg.kernel import KernelDriver
from rms.wg.keys import WgPrivateKey
from rms.wg.manager import WireGuard
from rms.wg.model import Endpoint, InterfaceConfig, PeerConfig

async def main():
    wg = WireGuard(KernelDriver())
    peer = PeerConfig(WgPrivateKey.generate().public_key(), Endpoint.parse("192.0.2.9:51820"),
                      frozenset({ip_network("fd00::2/128")}), 25)
    cfg = InterfaceConfig("tcwk0", WgPrivateKey.generate(), 51820,
                          frozenset({ip_interface("fd00::1/64")}), (peer,))
    first = await wg.ensure(cfg)
    again = await wg.ensure(cfg)
    state = await wg.state("tcwk0")
    removed = await wg.remove("tcwk0")
    return {
        "created": first.created, "again": len(again.changes), "port": state.listen_port,
        "peers": len(state.peers), "up": state.up, "removed": removed,
        "gone": await wg.state("tcwk0") is None,
    }

print(json.dumps(asyncio.run(main())))
"""


def in_fresh_netns(script: str) -> dict[str, Any]:
    done = subprocess.run(
        ["unshare", "--net", "--", sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return answer


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    return in_fresh_netns(PROBE)


def test_missing_kernel_wireguard_is_a_clear_error(probe: dict[str, Any]) -> None:
    if probe["probe"] == "ok":
        pytest.skip("this kernel has WireGuard")
    unavailable = "WireGuardUnavailable: kernel WireGuard is not available"
    assert probe["probe"].startswith(unavailable)
    assert probe["create"].startswith(unavailable)
    assert "use the userspace backend" in probe["create"]
    assert probe["set"].startswith(unavailable) and "generic netlink" in probe["set"]
    assert probe["exists"] is False
    assert probe["auto"] == "userspace"
    assert probe["kernel"].startswith(unavailable)


def test_kernel_round_trip(probe: dict[str, Any]) -> None:
    if probe["probe"] != "ok":
        pytest.skip("no kernel WireGuard here (PLATFORM.md); see docs/wireguard.md")
    found = in_fresh_netns(ROUND_TRIP)
    assert found == {
        "created": True,
        "again": 0,
        "port": 51820,
        "peers": 1,
        "up": True,
        "removed": True,
        "gone": True,
    }
