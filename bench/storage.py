"""Storage bench: one remote volume and the CFS pool, as ratios to bare tgt over loopback.

All measured in the same run, on this machine, with the real parts (needs root):

- **baseline**: tgtd on 127.0.0.1 and the libiscsi bridge (the same initiator the CFS uses)
  in one namespace, no WireGuard: a 64 MiB LUN as a file;
- **volume**: one volume as the CFS gets it: a nested wireguard-go link to a provider in
  another namespace (PSK, CHAP), then the bridge;
- **pool**: the CFS's RAIDZ3 over 8 such volumes (zfs-fuse), a file in it; the ARC is
  dropped (export, import) before reading;
- **resilver**: one provider of the pool killed; the CFS replaces it on its own; rate =
  bytes allocated on one device / time from `zpool replace` to resilver done.

Each figure is sequential write and read (1 MiB requests) and 4 KiB random reads and
writes; the bench prints ratios to the baseline and never fails on a figure. The last line
is one JSON object with every figure.

    sudo .venv/bin/python bench/storage.py [--mb 32] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cfs.healing import SlotState
from cfs.initiator.driver import LibiscsiBridge, VolumeTarget
from cfs.service import Cfs
from cfs.zfs.driver import ZfsCli
from tests.integration.cfs_support import SIZE, LocalSource, running_cfs
from tests.integration.test_storage_iscsi import INI_IQN, SECRET, two_namespaces
from volume_provider.target.driver import TargetManager
from volume_provider.target.model import ChapSecret, Portal, TargetConfig
from volume_provider.target.tgt import TgtDaemon, TgtDriver, kill

MIB = 1 << 20
BLOCK = 4096
Figures = dict[str, float]


def write_seq(path: Path, mb: int) -> float:
    """MB/s of writing mb MiB in 1 MiB requests, fsync included."""
    chunk = os.urandom(MIB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        t = time.perf_counter()
        for i in range(mb):
            os.pwrite(fd, chunk, i * MIB)
        os.fsync(fd)
        return mb / (time.perf_counter() - t)
    finally:
        os.close(fd)


def read_seq(path: Path, mb: int) -> float:
    """MB/s of reading mb MiB in 1 MiB requests."""
    fd = os.open(path, os.O_RDONLY)
    try:
        t = time.perf_counter()
        for i in range(mb):
            os.pread(fd, MIB, i * MIB)
        return mb / (time.perf_counter() - t)
    finally:
        os.close(fd)


def random_rw(path: Path, mb: int, seconds: float, rng: random.Random) -> Figures:
    """MB/s of 4 KiB random reads, then of 4 KiB random writes, `seconds` each."""
    fd = os.open(path, os.O_RDWR)
    try:
        blocks = mb * MIB // BLOCK
        rand_read = _random(lambda off: os.pread(fd, BLOCK, off), blocks, seconds, rng)
        data = os.urandom(BLOCK)
        rand_write = _random(lambda off: os.pwrite(fd, data, off), blocks, seconds, rng)
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"rand4k_read": rand_read, "rand4k_write": rand_write}


def measure(path: Path, mb: int, seconds: float, rng: random.Random) -> Figures:
    """Every figure on a file that no cache sits in front of (the bridge's disk)."""
    write, read = write_seq(path, mb), read_seq(path, mb)
    return {"seq_write": write, "seq_read": read, **random_rw(path, mb, seconds, rng)}


async def measure_pool(
    cfs: Cfs, root: Path, mb: int, seconds: float, rng: random.Random
) -> Figures:
    """The figures on a file in the pool; the ARC dropped (export, import) before each read."""
    path = root / "bench"
    write = await asyncio.to_thread(write_seq, path, mb)
    await drop_cache(cfs)
    read = await asyncio.to_thread(read_seq, path, mb)
    await drop_cache(cfs)
    rand = await asyncio.to_thread(random_rw, path, mb, seconds, rng)
    return {"seq_write": write, "seq_read": read, **rand}


async def drop_cache(cfs: Cfs) -> None:
    """Export and import the pool: nothing of it stays in the ARC."""
    assert cfs.healer is not None and isinstance(cfs.zfs, ZfsCli)
    await cfs.zfs.export(cfs.spec.name)
    dirs = [arg for slot in cfs.healer.slots for arg in ("-d", str(Path(slot.device).parent))]
    await cfs.zfs.run("import", *dirs, cfs.spec.name)


def _random(op: Callable[[int], object], blocks: int, seconds: float, rng: random.Random) -> float:
    done, end = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        op(rng.randrange(blocks) * BLOCK)
        done += 1
    return done * BLOCK / MIB / (time.perf_counter() - start)


@asynccontextmanager
async def bare_tgt(tmp: Path) -> AsyncIterator[Path]:
    """tgtd on 127.0.0.1 and the bridge in the same namespace: the LUN as a file."""
    with two_namespaces("b") as net:
        enter = net.enter(net.tgt)
        portal = Portal("127.0.0.1", 3260)
        control = 900 + os.getpid() % 100
        pid = await TgtDaemon(portal, control, tmp / "tgtd.log", enter).start()
        bridge = LibiscsiBridge(tmp / "bare", INI_IQN, enter)
        config = TargetConfig(
            "iqn.2026-11.cloud.true.bench:bare", 1, str(tmp / "bare.img"), SIZE, "bench",
            ChapSecret(SECRET), "127.0.0.1", portal,
        )  # fmt: skip
        target = VolumeTarget(str(portal), config.iqn, 1, "bench", SECRET)
        try:
            await TargetManager(TgtDriver(portal, control, enter)).ensure_target(config)
            yield await bridge.attach(target)
        finally:
            await bridge.detach(target)
            await kill(pid)


async def resilver_rate(cfs: Cfs, pool_used: int) -> float:
    """Kill one provider of the pool; MB/s from `zpool replace` to resilver done."""
    assert cfs.healer is not None
    source = cfs.source
    assert isinstance(source, LocalSource)
    victim = cfs.healer.slots[0].lease.provider.provider
    source.dead.add(victim)
    await source.providers[victim].down()
    started = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        await cfs.step()
        state = cfs.healer.slots[0].state
        if state is SlotState.RESILVERING and started is None:
            started = time.monotonic()
        if state is SlotState.ONLINE and cfs.healer.slots[0].lease.provider.provider != victim:
            took = time.monotonic() - (started or time.monotonic())
            return pool_used / 8 / MIB / max(took, 1e-3)
        await asyncio.sleep(0.5)
    raise RuntimeError("the pool did not heal within 600 s")


async def measure_spare(cfs: Cfs, mb: int, seconds: float, rng: random.Random) -> Figures:
    """One volume as the CFS attaches it (a provider not in the pool), then given back."""
    assert cfs.healer is not None
    in_pool = {s.lease.provider.provider for s in cfs.healer.slots}
    offers = await cfs.source.offers(SIZE)
    lease = await cfs.source.obtain(next(c for c in offers if c.provider not in in_pool), SIZE)
    try:
        disk = await cfs.attacher.attach(lease)
        pid = int((disk.parent.parent / "pid").read_text())
        return await asyncio.to_thread(measure, Path(f"/proc/{pid}/root{disk}"), mb, seconds, rng)
    finally:
        await cfs.attacher.detach(lease)
        await cfs.source.release(lease)


async def main(mb: int, seconds: float) -> dict[str, Figures]:
    """Every figure, the baseline first."""
    rng = random.Random(7)
    results: dict[str, Figures] = {}
    with TemporaryDirectory(prefix="cfsbench") as tmp_text:
        tmp = Path(tmp_text)
        (tmp / "b").mkdir()
        async with bare_tgt(tmp / "b") as disk:
            pid = int((disk.parent.parent / "pid").read_text())
            path = Path(f"/proc/{pid}/root{disk}")
            results["baseline"] = await asyncio.to_thread(measure, path, mb, seconds, rng)
        (tmp / "p").mkdir()
        async with running_cfs(tmp / "p") as (cfs, _, root):
            assert isinstance(cfs.zfs, ZfsCli)
            results["volume"] = await measure_spare(cfs, mb, seconds, rng)
            results["pool"] = await measure_pool(cfs, root, mb, seconds, rng)
            used = (await cfs.zfs.usage(cfs.spec.name))[1]
            results["resilver"] = {"mb_per_s": await resilver_rate(cfs, used)}
    return results


def report(results: dict[str, Figures]) -> None:
    """Ratios to the baseline, then the JSON line."""
    base = results["baseline"]
    print(f"baseline (bare tgt over loopback, libiscsi bridge): {_fmt(base)}")
    for name in ("volume", "pool"):
        ratios = {k: v / base[k] for k, v in results[name].items() if base.get(k)}
        results[f"{name}_ratio"] = ratios
        print(f"{name}: {_fmt(results[name])}")
        print(f"{name} / baseline: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    rate = results["resilver"]["mb_per_s"]
    results["resilver"]["ratio_to_baseline_seq_write"] = rate / base["seq_write"]
    print(f"resilver: {rate:.1f} MB/s ({rate / base['seq_write']:.2f}x the baseline's writes)")
    print(json.dumps(results, sort_keys=True))


def _fmt(figures: Figures) -> str:
    return ", ".join(f"{k} {v:.1f} MB/s" for k, v in figures.items())


def cli() -> None:
    """`python bench/storage.py [--mb N] [--seconds S]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=32, help="MiB written and read per figure")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per random figure")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/storage.py needs root (namespaces, tgtd, zfs-fuse)")
    report(asyncio.run(main(args.mb, args.seconds)))


if __name__ == "__main__":
    cli()
