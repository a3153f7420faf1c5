"""Eight real tgtd LUNs, eight libiscsi bridges, one zfs-fuse RAIDZ3 pool (issue 5).

One tgtd per LUN (nine, each on its own port and control port) so a LUN dies the way a
provider does: its process is SIGKILLed. The bridges and zfs-fuse share one private mount
namespace (`StorageNamespace`), as they do inside a lab node; the test reads the pool
through /proc/<zfs-fuse pid>/root.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from cfs.initiator.driver import LibiscsiBridge, VolumeTarget
from cfs.zfs.driver import ZfsCli
from cfs.zfs.fused import StorageNamespace, ZfsFuseDaemon, stop
from cfs.zfs.status import PoolStatus
from tests.integration.host_support import needs_root_and
from tests.integration.test_storage_iscsi import INI_IQN, Net, config, two_namespaces, volume
from volume_provider.target.driver import TargetManager
from volume_provider.target.tgt import TgtDaemon, TgtDriver, kill

pytestmark = needs_root_and(
    "tgtd", "zfs-fuse", "zpool", "unshare", "nsenter", packages="tgt, zfs-fuse and util-linux"
)
LUNS, DATA_MB = 9, 48


@contextlib.asynccontextmanager
async def nine_targets(net: Net, tmp: Path) -> AsyncIterator[list[int]]:
    """Nine tgtds, one LUN each; all SIGKILLed afterwards."""
    pids: list[int] = []
    base = 21000 + os.getpid() % 1000 * 10
    try:
        for n in range(1, LUNS + 1):
            cfg = config(net, tmp / f"lun{n}.img", 3260 + n, n)
            daemon = TgtDaemon(cfg.portal, base + n, tmp / f"tgtd{n}.log", net.enter(net.tgt))
            pids.append(await daemon.start())
            await TargetManager(TgtDriver(cfg.portal, base + n, net.enter(net.tgt))).ensure_target(
                cfg
            )
        yield pids
    finally:
        for pid in pids:
            await kill(pid)


def targets(net: Net, tmp: Path) -> list[VolumeTarget]:
    return [volume(config(net, tmp / f"lun{n}.img", 3260 + n, n)) for n in range(1, LUNS + 1)]


async def wait_for(zfs: ZfsCli, pool: str, done: str, timeout_s: float = 90) -> PoolStatus:
    """Poll status until its scan line says `done` (e.g. 'resilver completed')."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        status = await zfs.status(pool)
        if done in status.scan.text and not status.scan.in_progress:
            return status
        await asyncio.sleep(0.5)
    raise AssertionError(f"no {done!r} within {timeout_s} s: {status}")


def sha_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_random(path: Path, mb: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(mb):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            f.write(chunk)
        os.fsync(f.fileno())
    return digest.hexdigest()


async def test_raidz3_survives_three_losses_resilvers_and_fails_cleanly_at_four(
    tmp_path: Path,
) -> None:
    pool, mountpoint = "tcpool", tmp_path / "pool"
    ns = StorageNamespace(tmp_path / "ns")
    with two_namespaces("b") as net:
        async with nine_targets(net, tmp_path) as tgt_pids:
            await ns.create()
            bridge = LibiscsiBridge(
                tmp_path / "bridges", INI_IQN, ns.enter(Path(f"/run/netns/{net.ini}"))
            )
            vols = targets(net, tmp_path)
            zpid = 0
            try:
                disks = [await bridge.attach(v) for v in vols]
                zpid = await ZfsFuseDaemon(ns.enter(), tmp_path / "zfs-fuse.log").start()
                zfs = ZfsCli(ns.enter())
                await exercise(
                    zfs, pool, disks, tgt_pids, Path(f"/proc/{zpid}/root{mountpoint}"), mountpoint
                )
            finally:
                if zpid:
                    with contextlib.suppress(Exception):
                        await ZfsCli(ns.enter()).run("destroy", "-f", pool, timeout_s=15)
                    await stop(zpid)
                for v in vols:
                    await bridge.detach(v)
                await ns.remove()
    assert str(tmp_path) not in Path("/proc/mounts").read_text()


async def exercise(
    zfs: ZfsCli, pool: str, disks: list[Path], tgt_pids: list[int], seen: Path, mountpoint: Path
) -> None:
    await zfs.create_raidz3(pool, disks[:8], mountpoint)
    assert (await zfs.status(pool)).state == "ONLINE"
    t0 = time.monotonic()
    digest = await asyncio.to_thread(write_random, seen / "data", DATA_MB)
    print(f"pool write: {DATA_MB / (time.monotonic() - t0):.1f} MB/s")
    for pid in tgt_pids[:3]:
        await kill(pid)
    await zfs.scrub(pool)
    status = await wait_for(zfs, pool, "scrub completed")
    print(status)
    assert status.state == "DEGRADED"
    assert [v.state for v in status.leaves[:3]] != ["ONLINE"] * 3
    t0 = time.monotonic()
    assert await asyncio.to_thread(sha_of, seen / "data") == digest
    print(f"pool read (degraded): {DATA_MB / (time.monotonic() - t0):.1f} MB/s")
    t0 = time.monotonic()
    await zfs.replace(pool, str(disks[0]), disks[8])
    status = await wait_for(zfs, pool, "resilver completed")
    print(f"resilver: {time.monotonic() - t0:.1f} s; {status.device(str(disks[8]))}")
    assert status.device(str(disks[8])) is not None
    assert status.device(str(disks[8])).state == "ONLINE"  # type: ignore[union-attr]
    for pid in tgt_pids[3:5]:
        await kill(pid)
    await check_failure(zfs, pool, seen, digest)


async def check_failure(zfs: ZfsCli, pool: str, seen: Path, digest: str) -> None:
    """Four of eight gone: reads fail (or return the right bytes from cache), never wrong ones."""
    with contextlib.suppress(Exception):
        await zfs.scrub(pool)  # reads every device, so ZFS notices all four losses
    status = await wait_lost(zfs, pool, 4)
    try:
        got = await asyncio.wait_for(asyncio.to_thread(sha_of, seen / "data"), 30)
    except OSError as e:
        print(f"read with 4 lost: {e}")
    else:
        assert got == digest
    print(status)
    assert status.state in ("UNAVAIL", "SUSPENDED", "FAULTED")


async def wait_lost(zfs: ZfsCli, pool: str, lost: int, timeout_s: float = 30) -> PoolStatus:
    """Poll status until at least `lost` devices are not ONLINE."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (status := await zfs.status(pool)) and loop.time() < deadline:
        if sum(v.state != "ONLINE" for v in status.leaves) >= lost:
            return status
        await asyncio.sleep(0.5)
    raise AssertionError(f"fewer than {lost} devices lost after {timeout_s} s: {status}")
