"""Real `vpn-discovery serve` mirrors on loopback: replication, catch-up, persistence, rogues.

Three mirrors replicate a record; one dies by SIGKILL; an update goes to another; a fresh
mirror with an empty store catches up by anti-entropy; a rogue mirror serving an altered and
a forged record is outvoted; a mirror stopped with SIGTERM keeps its records on disk.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from rms.discovery import RecordReason, VpnRecord
from rms.discovery.client import DiscoveryClient, DiscoveryUnavailable
from rms.lab.ca import LabCA, ServerFiles
from tests.discovery_support import (
    MEMBERS,
    OUTSIDER,
    SIGNER,
    altered,
    https_app,
    record,
    resealed,
)
from tests.integration.conftest import stop_process
from vpn_discovery.server import render_feed

ANTI_ENTROPY_S = 600.0  # after the round at start: new records travel by push only
DEADLINE_S = 15.0


@dataclass
class MirrorProcess:
    name: str
    port: int
    config: Path
    log: Path
    state: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/feed.rss"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vpn_discovery", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=log,
            )

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        stop_process(self.proc)
        return self.proc.returncode

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def configure(base: Path, name: str, port: int, peers: list[int], tls: ServerFiles) -> Path:
    urls = ", ".join(f'"https://127.0.0.1:{p}"' for p in peers)
    config = base / f"{name}.toml"
    config.write_text(
        f'[server]\nlisten = ["127.0.0.1"]\nport = {port}\n'
        f'cert_file = "{tls.cert}"\nkey_file = "{tls.key}"\n'
        f'public_url = "https://discovery.test/feed.rss"\n'
        f'[store]\nstate_file = "{base / name}.msgpack"\nsave_interval_s = 0.2\n'
        f'[peers]\nurls = [{urls}]\nca_file = "{tls.ca}"\nanti_entropy_s = {ANTI_ENTROPY_S}\n'
        f"timeout_s = 2\n"
        f'[log]\nformat = "json"\nlevel = "debug"\n'
    )
    return config


@dataclass
class Cloud:
    base: Path
    tls: ServerFiles
    ports: list[int]
    mirrors: dict[str, MirrorProcess]

    def mirror(
        self, name: str, index: int, peers: list[int], *, fresh: bool = False
    ) -> MirrorProcess:
        config = configure(self.base, name, self.ports[index], peers, self.tls)
        state = self.base / f"{name}.msgpack"
        if fresh:
            state.unlink(missing_ok=True)
        m = MirrorProcess(name, self.ports[index], config, self.base / f"{name}.log", state)
        self.mirrors[name] = m
        m.start()
        return m

    def client(self, *mirrors: MirrorProcess | str, fanout: int = 1) -> DiscoveryClient:
        urls = [m if isinstance(m, str) else m.url for m in mirrors]
        return DiscoveryClient(urls, ca_file=self.tls.ca, timeout_s=2, fanout=fanout)

    def logs(self) -> str:
        return "\n".join(f"--- {m.name}\n{m.log.read_text()}" for m in self.mirrors.values())


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    ca = LabCA.create()
    tls = ca.write_server(tmp_path / "tls", "mirror", ["discovery.test"], ["127.0.0.1"])
    c = Cloud(tmp_path, tls, [free_port() for _ in range(4)], {})
    try:
        yield c
    finally:
        for m in c.mirrors.values():
            m.stop()


async def wait_for(cloud: Cloud, mirror: MirrorProcess, vpn: VpnRecord, seq: int) -> None:
    """Poll one mirror's feed until it serves `vpn` at `seq`."""
    client = cloud.client(mirror)
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        assert mirror.proc is not None and mirror.proc.poll() is None, cloud.logs()
        try:
            result = await client.fetch()
        except DiscoveryUnavailable:
            result = None
        found = result.records.get(vpn.vpn_id) if result else None
        if found is not None and found.seq == seq:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{mirror.name} never served seq {seq}\n{cloud.logs()}")


async def ready(cloud: Cloud, *mirrors: MirrorProcess) -> None:
    """Wait until each mirror serves its feed."""
    for mirror in mirrors:
        client = cloud.client(mirror)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            assert mirror.proc is not None and mirror.proc.poll() is None, cloud.logs()
            try:
                await client.fetch()
                break
            except DiscoveryUnavailable:
                assert time.monotonic() < deadline, cloud.logs()
                await asyncio.sleep(0.05)


def rogue_app(body: bytes) -> web.Application:
    async def feed(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/rss+xml")

    app = web.Application()
    app.router.add_get("/feed.rss", feed)
    return app


async def test_mirrors_replicate_catch_up_persist_and_outvote_a_rogue(cloud: Cloud) -> None:
    p1, p2, p3, _ = cloud.ports
    m1 = cloud.mirror("m1", 0, [p2, p3])
    m2 = cloud.mirror("m2", 1, [p1, p3])
    m3 = cloud.mirror("m3", 2, [p1, p2])
    await ready(cloud, m1, m2, m3)

    # Published to mirror 1 only, it reaches mirrors 2 and 3.
    first = record(seq=1, now=time.time())
    await cloud.client(m1).publish(first)
    for m in (m1, m2, m3):
        await wait_for(cloud, m, first, 1)

    # Mirror 1 dies; an update goes to mirror 2; a fresh, empty mirror 4 catches up.
    m1.kill()
    update = record(seq=2, now=time.time())
    result = await cloud.client(m2).publish(update)
    assert result.accepted == (m2.url,)
    m4 = cloud.mirror("m4", 3, [p1, p2, p3], fresh=True)
    await ready(cloud, m4)
    await wait_for(cloud, m4, update, 2)
    await wait_for(cloud, m3, update, 2)
    pulled = [json.loads(line) for line in m4.log.read_text().splitlines()]
    assert any(e["event"] == "sync.pulled" and e["stored"] == 1 for e in pulled)

    # A rogue mirror serves an altered and a forged record; the client keeps the genuine one.
    now = time.time()
    tampered = altered(record(seq=3, now=now), MEMBERS, 0)
    forged = resealed(record(seq=4, now=now), SIGNER, OUTSIDER.public_key, OUTSIDER)
    body = render_feed([first], link="https://rogue.test/feed.rss", now=now)
    items = b"".join(
        b"<item><description>" + base64.b64encode(raw) + b"</description></item>"
        for raw in (tampered, forged)
    )
    body = body.replace(b"</channel>", items + b"</channel>")
    async with https_app(rogue_app(body), cloud.tls) as rogue:
        fetched = await cloud.client(rogue, m4, fanout=2).fetch()
    assert fetched.records[update.vpn_id] == update
    assert sorted((r.mirror, r.reason.value) for r in fetched.rejected) == [
        (rogue, RecordReason.BAD_SIGNATURE.value),
        (rogue, RecordReason.NOT_GUARDIAN.value),
    ]

    # SIGTERM stops a mirror in order; restarted alone, it still has its records.
    assert m2.stop() == 0
    events = [json.loads(line)["event"] for line in m2.log.read_text().splitlines()]
    assert events[-2:] == ["stopping", "stopped"]
    assert m2.state.stat().st_size > 0
    alone = cloud.mirror("m2", 1, [])
    await ready(cloud, alone)
    await wait_for(cloud, alone, update, 2)
