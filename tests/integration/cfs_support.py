"""Real storage for the CFS's integration tests and bench: providers, a source, a pool.

Eleven providers live in one network namespace, each as its real parts: a wireguard-go
interface (the nested link, whose only peer is the CFS), and a tgtd exporting one 64 MiB
LUN with CHAP on the provider's address inside that link. The CFS runs in a second
namespace (`in_netns`) with its own code. Only the volume protocol is replaced, by
`LocalSource`, which sets up a provider's side when the CFS claims it (the protocol is
tested in tests/unit/test_cfs_volumes.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import hashlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Interface
from pathlib import Path
from typing import Any

from cfs.attach import Attacher
from cfs.healing import Policy
from cfs.initiator.driver import LibiscsiBridge, VolumeTarget
from cfs.lease import Lease, Tunnel, VolumeError
from cfs.placement import Candidate
from cfs.service import Cfs, PoolSpec
from cfs.zfs.driver import ZfsCli
from cfs.zfs.fused import StorageNamespace, ZfsFuseDaemon, stop
from rms.spawn import spawn_detached
from rms.wg.keys import WgPrivateKey, WgPublicKey
from rms.wg.manager import WireGuard
from rms.wg.userspace import UserspaceDriver
from tests.integration.test_storage_iscsi import INI_IQN, SECRET, Net, two_namespaces
from volume_provider.target.driver import TargetManager
from volume_provider.target.model import ChapSecret, Portal, TargetConfig
from volume_provider.target.tgt import TgtDaemon, TgtDriver, kill

TOOLS = ("tgtd", "zfs-fuse", "zpool", "wireguard-go", "wg", "nsenter", "unshare", "ip")
PROVIDERS, SIZE, DATA_MB, KILLED = 11, 64 << 20, 24, 3
CLONE_NEWNET = 0x40000000
TAG = os.getpid() % 1000


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run this thread (the event loop's) and what it spawns in another network namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        yield
    finally:
        libc.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


def run(*argv: str, stdin: bytes = b"") -> None:
    subprocess.run(argv, check=True, capture_output=True, input=stdin)


@dataclass
class Provider:
    """One provider's real parts: its nested link (wireguard-go) and its tgtd."""

    n: int
    net: Net
    tmp: Path
    key: WgPrivateKey = field(default_factory=WgPrivateKey.generate)
    pids: list[int] = field(default_factory=list)
    granted: tuple[WgPublicKey, int, bytes] | None = None

    @property
    def iface(self) -> str:
        return f"tcp{TAG}p{self.n}"

    @property
    def inner(self) -> IPv6Address:
        return IPv6Address(f"fd77:{TAG:x}:{self.n:x}::1")

    @property
    def port(self) -> int:
        return 51800 + self.n

    def candidate(self) -> Candidate:
        return Candidate(
            hashlib.sha256(f"provider-{TAG}-{self.n}".encode()).hexdigest(),
            f"loc-{self.n}",
            f"net-{self.n}",
            IPv4Address(f"198.18.{self.n}.1"),
        )

    async def up(self, client: WgPublicKey, client_port: int, psk: bytes) -> None:
        """The provider's side of a lease: link first, then tgtd on the inner address."""
        self.granted = (client, client_port, psk)
        enter = self.net.enter(self.net.tgt)
        env = {"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1", "PATH": os.environ["PATH"]}
        self.pids.append(
            spawn_detached(
                [*enter, "wireguard-go", "-f", self.iface], self.tmp / f"wg{self.n}.log", env
            )
        )
        sock = Path(f"/var/run/wireguard/{self.iface}.sock")
        for _ in range(100):
            if sock.exists():
                break
            await asyncio.sleep(0.05)
        key_file, psk_file = self.tmp / f"p{self.n}.key", self.tmp / f"p{self.n}.psk"
        for path, raw in ((key_file, self.key.raw), (psk_file, psk)):
            path.write_text(base64.b64encode(raw).decode() + "\n")
            path.chmod(0o600)
        inner_client = f"fd77:{TAG:x}:{self.n:x}::2/128"
        run(
            *enter, "wg", "set", self.iface, "listen-port", str(self.port),
            "private-key", str(key_file), "peer", client.base64(), "preshared-key", str(psk_file),
            "allowed-ips", inner_client, "endpoint", f"{self.net.ini_addr}:{client_port}",
        )  # fmt: skip
        run(*enter, "ip", "addr", "add", f"{self.inner}/64", "dev", self.iface, "nodad")
        run(*enter, "ip", "link", "set", self.iface, "up")
        portal = Portal(str(self.inner), 3260)
        tgt = TgtDaemon(portal, 1000 + TAG * 16 + self.n, self.tmp / f"tgtd{self.n}.log", enter)
        self.pids.append(await tgt.start())
        driver = TgtDriver(portal, 1000 + TAG * 16 + self.n, enter)
        await TargetManager(driver).ensure_target(self.config())

    def config(self) -> TargetConfig:
        return TargetConfig(
            iqn=f"iqn.2026-11.cloud.true.test:vol{self.n}",
            tid=1,
            backing=str(self.tmp / f"vol{self.n}.img"),
            size=SIZE,
            chap_user=f"user{self.n}",
            chap_secret=ChapSecret(SECRET),
            initiator_address=f"fd77:{TAG:x}:{self.n:x}::2",
            portal=Portal(str(self.inner), 3260),
        )

    async def revive(self) -> None:
        """Come back after a crash: the same link and the same volume (its file is kept)."""
        assert self.granted is not None
        await self.up(*self.granted)

    async def down(self) -> None:
        """SIGKILL tgtd and wireguard-go (a provider that vanished, or a released lease)."""
        for pid in self.pids:
            await kill(pid)
        self.pids.clear()
        Path(f"/var/run/wireguard/{self.iface}.sock").unlink(missing_ok=True)


@dataclass
class LocalSource:
    """The CFS's VolumeSource with the protocol cut out: a claim sets the provider up."""

    providers: dict[str, Provider]
    dead: set[str] = field(default_factory=set)
    leased: set[str] = field(default_factory=set)
    released: list[str] = field(default_factory=list)
    renewed: list[str] = field(default_factory=list)

    async def offers(self, size: int) -> list[Candidate]:
        live = [p for k, p in self.providers.items() if k not in self.dead | self.leased]
        return [p.candidate() for p in live]

    async def obtain(self, candidate: Candidate, size: int) -> Lease:
        p = self.providers[candidate.provider]
        key, psk, port = WgPrivateKey.generate(), os.urandom(32), 52000 + p.n
        await p.up(key.public_key(), port, psk)
        self.leased.add(candidate.provider)
        cfg = p.config()
        target = VolumeTarget(str(cfg.portal), cfg.iqn, 1, cfg.chap_user, SECRET)
        tunnel = Tunnel(
            key,
            IPv6Interface(f"fd77:{TAG:x}:{p.n:x}::2/64"),
            p.key.public_key(),
            f"{p.net.tgt_addr}:{p.port}",
            p.inner,
            psk,
            port,
        )
        return Lease(f"t{TAG}-{p.n}", candidate, size, time.time() + 600, target, tunnel)

    async def renew(self, lease: Lease) -> Lease:
        if lease.provider.provider in self.dead:
            raise VolumeError("provider gone")
        self.renewed.append(lease.lease_id)
        return lease.renewed(time.time() + 600)

    def record(self, lease: Lease) -> dict[str, Any]:
        return {"n": self.providers[lease.provider.provider].n}

    def adopt(self, lease: Lease, record: dict[str, Any]) -> None:
        p = self.providers.get(lease.provider.provider)
        if p is None or record != {"n": p.n}:
            raise VolumeError(f"lease {lease.lease_id}: not one of ours")
        self.leased.add(lease.provider.provider)

    async def release(self, lease: Lease) -> None:
        self.released.append(lease.provider.provider)
        self.leased.discard(lease.provider.provider)
        await self.providers[lease.provider.provider].down()


@contextlib.asynccontextmanager
async def storage(
    tmp: Path, count: int = PROVIDERS
) -> AsyncIterator[tuple[Net, StorageNamespace, int, LocalSource]]:
    """Namespaces, zfs-fuse and `count` providers; everything gone afterwards, also on failure."""
    with two_namespaces("h") as net:
        for netns in (net.tgt, net.ini):
            for key in ("all", "default"):
                run(
                    "ip",
                    "netns",
                    "exec",
                    netns,
                    "sysctl",
                    "-qw",
                    f"net.ipv6.conf.{key}.accept_dad=0",
                )
        ns = StorageNamespace(tmp / "ns")
        providers = {
            p.candidate().provider: p for p in (Provider(n, net, tmp) for n in range(1, count + 1))
        }
        source = LocalSource(providers)
        zpid = 0
        try:
            await ns.create()
            zpid = await ZfsFuseDaemon(ns.enter(), tmp / "zfs-fuse.log").start()
            yield net, ns, zpid, source
        finally:
            if zpid:
                with contextlib.suppress(Exception):
                    await ZfsCli(ns.enter()).run("destroy", "-f", "tch", timeout_s=15)
                await stop(zpid)
            for p in providers.values():
                await p.down()
            await ns.remove()


def digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


async def heal(cfs: Cfs, timeout_s: float) -> list[str]:
    """Step the service (as its watch loop does) until the pool is ONLINE with none lost."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        await cfs.step()
        assert cfs.healer is not None
        if cfs.healer.lost() == 0 and cfs.last_status and cfs.last_status.state == "ONLINE":
            return list(cfs.healer.history)
        await asyncio.sleep(1)
    raise AssertionError(f"not healed in {timeout_s} s: {cfs.snapshot()}")


@contextlib.asynccontextmanager
async def running_cfs(
    tmp: Path, count: int = PROVIDERS, *, hot_spare: bool = False
) -> AsyncIterator[tuple[Cfs, LocalSource, Path]]:
    """A built pool over 8 of `count` providers; shut down and torn down afterwards."""
    async with storage(tmp, count) as (net, ns, zpid, source):
        mountpoint = tmp / "pool"
        with in_netns(net.ini):
            wg = WireGuard(UserspaceDriver(log_dir=tmp))
            bridges = LibiscsiBridge(tmp / "bridges", INI_IQN, ns.enter())
            cfs = Cfs(
                PoolSpec("tch", mountpoint, SIZE, "ee" * 32),
                source=source,
                attacher=Attacher(wg, bridges),
                zfs=ZfsCli(ns.enter()),
                policy=Policy(retry_s=1, max_retry_s=4, poll_s=1, hot_spare=hot_spare),
            )
            try:
                await cfs.build()
                yield cfs, source, Path(f"/proc/{zpid}/root{mountpoint}")
            finally:
                await cfs.shutdown()
                for name in await wg.names():
                    if name.startswith("cfs"):
                        await wg.remove(name)
    assert str(tmp) not in Path("/proc/mounts").read_text()


async def written(cfs: Cfs, root: Path, mb: int) -> tuple[Path, str]:
    """A file of random data and its digest; the ARC dropped (export, import) afterwards."""
    assert cfs.healer is not None and isinstance(cfs.zfs, ZfsCli)
    data = root / "data"
    await asyncio.to_thread(data.write_bytes, os.urandom(mb << 20))
    want = await asyncio.to_thread(digest, data)
    await cfs.zfs.export(cfs.spec.name)
    dirs = [arg for slot in cfs.healer.slots for arg in ("-d", str(Path(slot.device).parent))]
    await cfs.zfs.run("import", *dirs, cfs.spec.name)
    return data, want
