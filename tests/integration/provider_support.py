"""Plumbing for the provider's real tests: two namespaces, the RMS side, the provider process,
the client's nested WireGuard link, and TCP from inside a namespace.

- `two_namespaces`: provider and client namespaces on a veth pair whose IPv6 addresses play
  the management VPN (one /64, as two members of one VPN); always deleted afterwards.
- `RmsSide`: the RMS's real broadcast routes (rms.gossip.exchange, PublishedSections) on a
  unix socket for the provider process, with a real gossip core for the provider's node and
  one for the client's; the one gossip hop between them is handed over in memory (the
  broadcast has its own tests over UDP and in the lab).
- `provider_process`: `python -m volume_provider run` inside the provider namespace, with
  its own tgtd (a unique control port) and wireguard-go links; SIGTERM, then SIGKILL of
  every process left in the namespace, so nothing survives a failed test.
- `ClientLink`: the client's side of a volume's nested VPN with wireguard-go and `wg`.
- `connect_in`: a TCP connection made from inside a namespace (setns in a worker thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path

from aiohttp import web

from rms.control.sections import PublishedSections
from rms.gossip.adapter import GossipService
from rms.gossip.core import Gossip
from rms.gossip.events import AnswerReceived, Delivered, Send
from rms.gossip.exchange import Exchange
from rms.gossip.inbox import Inbox
from rms.identity import KEY_FILE_NAME, NodeIdentity, format_key_file
from rms.net.framing import FrameReader, encode_frame
from rms.status import StatusBoard
from rms.volumes import MAX_MESSAGE, GrantSecrets, Offer, RequestTerms
from rms.wire.messages.gossip import RequestBody
from tests.unit.volumes_support import Wire

CLONE_NEWNET = 0x40000000
VPN = uuid.UUID(int=0x5EED)
P_ADDR = IPv6Address("fd42:5eed:1::1")
C_ADDR = IPv6Address("fd42:5eed:1::2")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def enter(ns: str) -> tuple[str, ...]:
    return ("nsenter", f"--net=/run/netns/{ns}", "--")


@contextlib.contextmanager
def two_namespaces(tag: str) -> Iterator[tuple[str, str]]:
    """(provider namespace, client namespace), linked; both deleted afterwards."""
    pns, cns = f"pvt{tag}p{os.getpid() % 100000}", f"pvt{tag}c{os.getpid() % 100000}"
    try:
        for ns in (pns, cns):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", pns, "link", "add", "m0", "type", "veth", "peer", "name", "m1", "netns", cns)
        ip("-n", pns, "addr", "add", f"{P_ADDR}/64", "dev", "m0", "nodad")
        ip("-n", cns, "addr", "add", f"{C_ADDR}/64", "dev", "m1", "nodad")
        ip("-n", pns, "link", "set", "m0", "up")
        ip("-n", cns, "link", "set", "m1", "up")
        yield pns, cns
    finally:
        for ns in (pns, cns):
            kill_all_in(ns)
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


def kill_all_in(ns: str) -> None:
    """SIGKILL every process still in one of our test namespaces."""
    found = subprocess.run(["ip", "netns", "pids", ns], check=False, capture_output=True, text=True)
    for pid in found.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


class RmsSide:
    """The provider node's RMS routes plus the client node's broadcast, one hop apart."""

    def __init__(self, provider: NodeIdentity, client: NodeIdentity) -> None:
        self.client_core = Gossip(client, random.Random(1), now=time.time())
        self.client_core.set_neighbours(VPN, [provider.public_key])
        core = Gossip(provider, random.Random(2), now=time.time())
        core.set_neighbours(VPN, [client.public_key])
        self.wire = Wire()
        self.service = GossipService(core, self._heard)
        self.exchange = Exchange(self.service, Inbox())
        self.board = StatusBoard(provider.node_id_hex, "test", os.getpid(), "now")
        self.sections = PublishedSections(self.board)
        self.answers: list[AnswerReceived] = []

    def _heard(self, event: Delivered | AnswerReceived) -> None:
        self.exchange.heard(event)

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(self.exchange.routes())
        app.add_routes(self.sections.routes())
        app.router.add_get("/v1/status", self._status)
        return app

    async def _status(self, request: web.Request) -> web.Response:
        status = self.board.snapshot(0)
        status["vpns"] = [{"uuid": str(VPN), "address": str(P_ADDR)}]
        status["entitlement"] = {"contribution": {"storage_bytes": 2**30}}
        return web.json_response(status)

    def broadcast(self, size: int, count: int = 1) -> bytes:
        """The client node broadcasts a storage request; the provider's RMS delivers it."""
        terms = RequestTerms(count, b"L" * 16, b"N" * 16).pack()
        request_id = self.client_core.new_request_id()
        body = RequestBody(request_id, "storage", size, 4, terms=terms)
        sends = self.client_core.broadcast(body, time.time())
        for out in sends:
            assert isinstance(out, Send)
            for event in self.service.core.datagram_received(
                out.data, self.client_core.identity.public_key, VPN, time.time()
            ):
                if isinstance(event, Delivered):
                    self.exchange.heard(event)
        return request_id

    async def offers(self, request_id: bytes, within_s: float = 20.0) -> list[Offer]:
        """Offers that reached the client node for its request (answers handed over)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            sent, self.wire.sent = self.wire.sent, []
            for frame in sent:
                key = self.service.core.identity.public_key
                for event in self.client_core.datagram_received(frame, key, VPN, time.time()):
                    if isinstance(event, AnswerReceived):
                        self.answers.append(event)
            found = [_offer(a) for a in self.answers if a.answer.request_id == request_id]
            if found:
                return [o for o in found if o is not None]
            await asyncio.sleep(0.1)
        return []


def _offer(event: AnswerReceived) -> Offer | None:
    offer = event.answer.offer
    addresses = offer.get("addresses", ())
    terms = offer.get("terms", b"")
    if not isinstance(addresses, tuple) or not isinstance(terms, bytes):
        return None
    return Offer.from_answer(event.answer.answerer, list(addresses), terms)


@contextlib.asynccontextmanager
async def rms_side(
    tmp: Path, provider: NodeIdentity, client: NodeIdentity
) -> AsyncIterator[tuple[RmsSide, Path]]:
    """The RMS side served on a unix socket in `tmp`."""
    side = RmsSide(provider, client)
    side.service.connection_made(side.wire)
    runner = web.AppRunner(side.app(), access_log=None)
    await runner.setup()
    path = tmp / "rms.sock"
    await web.UnixSite(runner, str(path)).start()
    try:
        yield side, path
    finally:
        side.service.close()
        await runner.cleanup()


def write_key(state_dir: Path, identity_seed: bytes) -> None:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = state_dir / KEY_FILE_NAME
    key.write_bytes(format_key_file(identity_seed))
    key.chmod(0o600)


def provider_config(tmp: Path, socket_path: Path, control_port: int, lease_s: int) -> Path:
    path = tmp / "provider.toml"
    path.write_text(
        f"""
[provider]
data_dir = "{tmp / "volumes"}"
lease_file = "{tmp / "leases.bin"}"
capacity_mib = 256
location = "provider-town"
network = "provider-net"
listen = ["{P_ADDR}"]
wg_port_first = {40000 + os.getpid() % 20000}
wg_port_count = 4
lease_s = {lease_s}
min_volume_mib = 16

[rms]
socket = "{socket_path}"
state_dir = "{tmp / "state"}"

[tgt]
control_port = {control_port}
log_dir = "{tmp / "logs"}"

[log]
format = "json"
level = "info"
"""
    )
    return path


@contextlib.asynccontextmanager
async def provider_process(
    ns: str, config: Path, log: Path, *, sweep: bool = True
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The real provider in its namespace; stopped with SIGTERM (unless the test killed it),
    and then, with `sweep`, every process left in the namespace too."""
    argv = [*enter(ns), sys.executable, "-m", "volume_provider", "run", "--config", str(config)]
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if sweep:
            kill_all_in(ns)


@dataclass
class ClientLink:
    """The client's end of one volume's nested VPN: wireguard-go in the client namespace."""

    ns: str
    name: str
    proc: asyncio.subprocess.Process | None = None

    async def up(self, tmp: Path, private: bytes, port: int, secrets: GrantSecrets) -> None:
        env = {**os.environ, "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
        self.proc = await asyncio.create_subprocess_exec(
            *enter(self.ns),
            "wireguard-go",
            "-f",
            self.name,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sock = Path(f"/var/run/wireguard/{self.name}.sock")
        for _ in range(100):
            if sock.exists():
                break
            await asyncio.sleep(0.05)
        key_file, psk_file = tmp / f"{self.name}.key", tmp / f"{self.name}.psk"
        for path, raw in ((key_file, private), (psk_file, secrets.wg_psk)):
            path.write_text(_b64(raw))
            path.chmod(0o600)
        self._run(
            "wg", "set", self.name, "private-key", str(key_file), "listen-port", str(port),
            "peer", _b64(secrets.wg_key), "preshared-key", str(psk_file),
            "endpoint", f"[{secrets.endpoint}]:{secrets.endpoint_port}",
            "allowed-ips", f"{secrets.portal}/128", "persistent-keepalive", "5",
        )  # fmt: skip
        self._run("ip", "addr", "add", f"{secrets.client_address}/64", "dev", self.name, "nodad")
        self._run("ip", "link", "set", self.name, "up")

    def _run(self, *argv: str, check: bool = True) -> None:
        subprocess.run([*enter(self.ns), *argv], check=check, capture_output=True)

    async def down(self) -> None:
        self._run("ip", "link", "del", self.name, check=False)
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def _b64(raw: bytes) -> str:
    import base64  # noqa: PLC0415

    return base64.b64encode(raw).decode()


def _socket_in(ns: str) -> socket.socket:
    """A TCP socket of namespace `ns`: made after setns in this (worker) thread, then back."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns into the test namespace failed")
        try:
            return socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back failed")
    finally:
        os.close(own)
        os.close(target)


async def exchange_in(ns: str, address: IPv6Address, port: int, data: bytes) -> bytes | None:
    """Send raw bytes to [address]:port from inside `ns`; the one frame answered, or None."""
    sock = await asyncio.to_thread(_socket_in, ns)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (str(address), port, 0, 0)), 10)
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        writer.write(data)
        await writer.drain()
        frames = FrameReader(MAX_MESSAGE)
        while chunk := await asyncio.wait_for(reader.read(MAX_MESSAGE), 30):
            found = frames.feed(chunk)
            if found:
                return found[0]
        return None
    except ConnectionResetError:  # the far end dropped us: as good as closed
        return None
    finally:
        writer.close()


LISTEN_WAIT_S = 20.0  # a provider just (re)started logs before its listener is up


async def ask(ns: str, data: bytes, port: int) -> bytes:
    """One framed volume message to the provider, its framed reply (a refused connection is
    retried for a while: the listener of a restarted provider comes up after its log line)."""
    deadline = time.monotonic() + LISTEN_WAIT_S
    while True:
        try:
            reply = await exchange_in(ns, P_ADDR, port, encode_frame(data))
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)
    assert reply is not None, "the provider closed without a reply"
    return reply
