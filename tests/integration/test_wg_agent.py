"""A driver agent for the userspace tests, run inside a network namespace, and its own checks.

`python -m tests.integration.test_wg_agent LOG_DIR` reads one JSON command per line on stdin
and answers one JSON line on stdout: ensure, state, remove, pid, echo (serve UDP echo) and
ping (send UDP until echoed). It uses the real `WireGuard(UserspaceDriver(...))`, so the
tests drive exactly what the RMS runs, in the namespace the agent was started in. The test
process builds configs and passes them as JSON (private keys in hex, over a pipe).
"""

from __future__ import annotations

import asyncio
import json
import sys
from ipaddress import ip_interface, ip_network
from pathlib import Path
from typing import Any

from rms.logs import configure_logging
from rms.wg.keys import WgPrivateKey, WgPublicKey
from rms.wg.manager import WireGuard
from rms.wg.model import Endpoint, InterfaceConfig, InterfaceState, PeerConfig
from rms.wg.userspace import UserspaceDriver

Json = dict[str, Any]


def config_json(cfg: InterfaceConfig) -> Json:
    """An InterfaceConfig as JSON (test keys only: the private key goes in hex)."""
    return {
        "name": cfg.name,
        "private_key": cfg.private_key.hex(),
        "listen_port": cfg.listen_port,
        "addresses": sorted(str(a) for a in cfg.addresses),
        "peers": [
            {
                "public_key": p.public_key.base64(),
                "endpoint": None if p.endpoint is None else str(p.endpoint),
                "allowed_ips": sorted(str(n) for n in p.allowed_ips),
                "keepalive": p.persistent_keepalive,
            }
            for p in cfg.peers
        ],
    }


def config_from_json(data: Json) -> InterfaceConfig:
    """The InterfaceConfig config_json made."""
    peers = tuple(
        PeerConfig(
            WgPublicKey.from_base64(p["public_key"]),
            None if p["endpoint"] is None else Endpoint.parse(p["endpoint"]),
            frozenset(ip_network(n) for n in p["allowed_ips"]),
            p["keepalive"],
        )
        for p in data["peers"]
    )
    return InterfaceConfig(
        data["name"],
        WgPrivateKey.from_hex(data["private_key"]),
        data["listen_port"],
        frozenset(ip_interface(a) for a in data["addresses"]),
        peers,
    )


def state_json(state: InterfaceState) -> Json:
    """What the tests look at in an InterfaceState."""
    return {
        "public_key": None if state.public_key is None else state.public_key.base64(),
        "listen_port": state.listen_port,
        "up": state.up,
        "addresses": sorted(str(a) for a in state.addresses),
        "peers": {
            p.public_key.base64(): {
                "endpoint": None if p.endpoint is None else str(p.endpoint),
                "allowed_ips": sorted(str(n) for n in p.allowed_ips),
                "keepalive": p.persistent_keepalive,
                "last_handshake": p.last_handshake,
                "rx": p.rx_bytes,
                "tx": p.tx_bytes,
            }
            for p in state.peers
        },
    }


class Echo(asyncio.DatagramProtocol):
    """Send every datagram back where it came from."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


class Catch(asyncio.DatagramProtocol):
    """Resolve a future with the first datagram."""

    def __init__(self) -> None:
        self.got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if not self.got.done():
            self.got.set_result(data)


class Agent:
    """Runs the commands."""

    def __init__(self, log_dir: Path) -> None:
        self.driver = UserspaceDriver(log_dir=log_dir)
        self.wg = WireGuard(self.driver)
        self.servers: list[asyncio.BaseTransport] = []

    async def run(self, cmd: Json) -> Json:
        op = cmd["op"]
        if op == "ensure":
            result = await self.wg.ensure(config_from_json(cmd["config"]))
            return {"created": result.created, "changes": [c.describe() for c in result.changes]}
        if op == "state":
            state = await self.wg.state(cmd["name"])
            return {"state": None if state is None else state_json(state)}
        if op == "remove":
            return {"removed": await self.wg.remove(cmd["name"])}
        if op == "pid":
            return {"pid": await self.driver.listener_pid(cmd["name"])}
        if op == "echo":
            return await self.echo(cmd["host"], cmd["port"])
        if op == "ping":
            return await self.ping(cmd["host"], cmd["port"], cmd["payload"])
        raise ValueError(f"unknown op {op}")

    async def echo(self, host: str, port: int) -> Json:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(host, port))
        self.servers.append(transport)
        return {}

    async def ping(self, host: str, port: int, payload: str) -> Json:
        loop = asyncio.get_running_loop()
        transport, catch = await loop.create_datagram_endpoint(Catch, remote_addr=(host, port))
        try:
            for _ in range(20):
                transport.sendto(payload.encode())
                done, _ = await asyncio.wait({catch.got}, timeout=0.25)
                if done:
                    return {"reply": catch.got.result().decode()}
            return {"reply": None}
        finally:
            transport.close()


async def serve(log_dir: Path) -> None:
    """Answer commands from stdin until it closes; interfaces are left as they are."""
    agent = Agent(log_dir)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        try:
            answer = {"ok": True, **await agent.run(json.loads(line))}
        except Exception as e:  # the test reads the error; the agent goes on
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    for transport in agent.servers:
        transport.close()


def test_configs_survive_their_json() -> None:
    peer = PeerConfig(
        WgPrivateKey.generate().public_key(),
        Endpoint.parse("[2001:db8::1]:51820"),
        frozenset({ip_network("fd00::1/128")}),
        25,
    )
    cfg = InterfaceConfig(
        "tcw0", WgPrivateKey.generate(), 1, frozenset({ip_interface("fd00::2/64")}), (peer,)
    )
    assert config_from_json(json.loads(json.dumps(config_json(cfg)))) == cfg


if __name__ == "__main__":
    configure_logging("json", "info", stream=sys.stderr)  # stdout carries the answers
    asyncio.run(serve(Path(sys.argv[1])))
