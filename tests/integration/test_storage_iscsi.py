"""Real tgtd in one network namespace, the real libiscsi bridge in another (issue 5).

Needs root, tgt, libiscsi7, fuse3 and mfusepy. The bridge joins the initiator namespace with
`nsenter --net` only, so its FUSE mount is visible to this test (PLATFORM.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cfs.initiator.driver import InitiatorError, LibiscsiBridge, VolumeTarget
from tests.integration.host_support import needs_root_and
from volume_provider.target.driver import TargetManager
from volume_provider.target.model import ChapSecret, Portal, TargetConfig
from volume_provider.target.tgt import TgtDaemon, TgtDriver, kill

TOOLS = ("tgtd", "tgtadm", "nsenter", "ip", "fusermount3")
SECRET = "s3cret-for-tests-only"
INI_IQN = "iqn.2024-01.cloud.true:test-initiator"
pytestmark = needs_root_and(*TOOLS, packages="tgt, util-linux, iproute2 and fuse3", fuse=True)


@dataclass(frozen=True)
class Net:
    """Two namespaces on a veth pair: the target side and the initiator side."""

    tgt: str
    ini: str
    tgt_addr: str = "10.77.0.1"
    ini_addr: str = "10.77.0.2"

    def enter(self, ns: str) -> tuple[str, ...]:
        return ("nsenter", f"--net=/run/netns/{ns}", "--")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def two_namespaces(tag: str) -> Iterator[Net]:
    """Create the pair; always delete both namespaces afterwards."""
    net = Net(f"tcs{tag}t{os.getpid() % 10000}", f"tcs{tag}i{os.getpid() % 10000}")
    try:
        for ns in (net.tgt, net.ini):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip(
            "-n",
            net.tgt,
            "link",
            "add",
            "v0",
            "type",
            "veth",
            "peer",
            "name",
            "v1",
            "netns",
            net.ini,
        )
        ip("-n", net.tgt, "addr", "add", f"{net.tgt_addr}/24", "dev", "v0")
        ip("-n", net.ini, "addr", "add", f"{net.ini_addr}/24", "dev", "v1")
        ip("-n", net.tgt, "link", "set", "v0", "up")
        ip("-n", net.ini, "link", "set", "v1", "up")
        yield net
    finally:
        for ns in (net.tgt, net.ini):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


def config(
    net: Net, backing: Path, port: int, n: int = 1, allow: str | None = None
) -> TargetConfig:
    return TargetConfig(
        iqn=f"iqn.2024-01.cloud.true:vol{n}",
        tid=n,
        backing=str(backing),
        size=64 << 20,
        chap_user=f"user{n}",
        chap_secret=ChapSecret(SECRET),
        initiator_address=allow or net.ini_addr,
        portal=Portal(net.tgt_addr, port),
    )


def volume(cfg: TargetConfig, secret: str = SECRET) -> VolumeTarget:
    return VolumeTarget(str(cfg.portal), cfg.iqn, 1, cfg.chap_user, secret)


@contextlib.asynccontextmanager
async def tgtd(
    net: Net, tmp: Path, port: int, control: int
) -> AsyncIterator[tuple[TgtDriver, int]]:
    """A running tgtd in the target namespace; SIGKILLed afterwards."""
    portal = Portal(net.tgt_addr, port)
    pid = await TgtDaemon(portal, control, tmp / f"tgtd{control}.log", net.enter(net.tgt)).start()
    try:
        yield TgtDriver(portal, control, net.enter(net.tgt)), pid
    finally:
        await kill(pid)


def read_in_thread(path: Path, offset: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


async def test_chap_acl_readwrite_and_dead_target_gives_eio(tmp_path: Path) -> None:
    control = 20000 + os.getpid() % 10000
    with two_namespaces("a") as net:
        good = config(net, tmp_path / "lun1.img", 3260)
        bridge = LibiscsiBridge(tmp_path / "bridges", INI_IQN, net.enter(net.ini))
        async with tgtd(net, tmp_path, 3260, control) as (driver, pid):
            manager = TargetManager(driver)
            try:
                await check_refusals(manager, bridge, good)
                disk = await bridge.attach(volume(good))
                await check_data(disk)
                state = await bridge.state(volume(good))
                assert state.attached and state.healthy
                (t,) = await manager.targets()
                assert t.sessions == (net.ini_addr,) and t.acl == (net.ini_addr,)
                assert t.accounts == ("user1",)
                await check_dead_target_eio(pid, disk)
                assert not (await bridge.state(volume(good))).healthy
            finally:
                await bridge.detach(volume(good))
        assert not (await bridge.state(volume(good))).attached
    assert str(tmp_path) not in Path("/proc/mounts").read_text()


async def check_refusals(
    manager: TargetManager, bridge: LibiscsiBridge, good: TargetConfig
) -> None:
    """A wrong source address, then a wrong secret: both refused, no secret in any error."""
    wrong_acl = TargetConfig(**{**good.__dict__, "initiator_address": "10.77.0.9"})
    await manager.ensure_target(wrong_acl)
    with pytest.raises(InitiatorError, match="login") as acl:
        await bridge.attach(volume(good))
    # The controller moves the ACL to the right address: allow the new, then deny the old.
    changes = await manager.ensure_target(good)
    assert [type(c).__name__ for c in changes] == ["AllowInitiator", "DenyInitiator"]
    assert await manager.ensure_target(good) == []
    with pytest.raises(InitiatorError, match="Authentication") as chap:
        await bridge.attach(volume(good, "not-the-right-secret"))
    for e in (acl, chap):
        assert SECRET not in str(e.value) and "not-the-right" not in str(e.value)
    assert SECRET not in repr(good) and SECRET not in repr(changes)


async def check_data(disk: Path) -> None:
    """Random data written through the FUSE file reads back, aligned and not."""
    data = os.urandom(8 << 20)
    t0 = time.monotonic()
    await asyncio.to_thread(write_file, disk, 0, data)
    t1 = time.monotonic()
    assert await asyncio.to_thread(read_in_thread, disk, 0, len(data)) == data
    t2 = time.monotonic()
    print(f"bridge: write {8 / (t1 - t0):.0f} MB/s, read {8 / (t2 - t1):.0f} MB/s")
    odd = os.urandom(1000)
    await asyncio.to_thread(write_file, disk, 12345, odd)
    expect = data[:12345] + odd + data[13345:14000]
    assert await asyncio.to_thread(read_in_thread, disk, 0, 14000) == expect


def write_file(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


async def check_dead_target_eio(pid: int, disk: Path) -> None:
    """SIGKILL tgtd: the next read fails with EIO well within 15 s, no hang."""
    await kill(pid)
    t0 = time.monotonic()
    with pytest.raises(OSError) as err:
        await asyncio.wait_for(asyncio.to_thread(read_in_thread, disk, 1 << 20, 4096), 15)
    assert err.value.errno == errno.EIO
    print(f"dead target: EIO after {time.monotonic() - t0:.3f} s")
