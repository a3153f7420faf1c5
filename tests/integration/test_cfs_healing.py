"""The CFS heals its pool for real: wireguard-go links, tgtd, libiscsi bridges, zfs-fuse (issue 5).

The set-up (tests/integration/cfs_support.py): eleven providers, each a wireguard-go nested
link and a tgtd with CHAP on its inner IPv6 address; the CFS's own code in a second
namespace (`Attacher`, the libiscsi bridge, `ZfsCli` on zfs-fuse, `Cfs` and its healer).
The tests kill 3 providers (tgtd and wireguard-go, SIGKILL) while reading, check every byte,
and let the service alone bring the pool back to ONLINE on 3 replacements; then kill 4,
see reads fail rather than lie, and see the pool resume when the 4 come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import pytest

from cfs.healing import SlotState
from cfs.leasefile import LeaseFileError, mac_key
from cfs.leasestore import LeaseStore, resume, saved_of
from cfs.service import Cfs
from cfs.spare import SpareState
from tests.integration.cfs_support import (
    DATA_MB,
    KILLED,
    TOOLS,
    LocalSource,
    digest,
    heal,
    running_cfs,
    written,
)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in TOOLS) or not Path("/dev/fuse").exists(),
        reason="needs tgt, zfs-fuse, wireguard-go, wireguard-tools, util-linux, fuse3",
    ),
]


async def test_three_providers_die_while_reading_and_the_pool_heals_alone(tmp_path: Path) -> None:
    async with running_cfs(tmp_path) as (cfs, source, root):
        await exercise(cfs, source, root)


async def test_four_lost_suspend_the_pool_cleanly_and_it_resumes_when_they_return(
    tmp_path: Path,
) -> None:
    async with running_cfs(tmp_path) as (cfs, source, root):
        assert cfs.healer is not None
        data, want = await written(cfs, root, 8)
        files = {root / f"f{n}": os.urandom(1 << 20) for n in range(6)}
        for path, blob in files.items():
            await asyncio.to_thread(path.write_bytes, blob)
        await asyncio.to_thread(os.sync)
        victims = [s.lease.provider.provider for s in cfs.healer.slots][:4]
        for provider in victims:
            source.dead.add(provider)
            await source.providers[provider].down()
        loop = asyncio.get_running_loop()
        until_ = loop.time() + 40
        while loop.time() < until_:
            await cfs.step()
            await asyncio.sleep(1)
        # zfs-fuse may still call the pool ONLINE (it counts errors, fails I/O with EIO and
        # marks vdevs only when it probes them); the CFS knows the 4 sessions are gone.
        assert cfs.healer.lost() == 4 and cfs.last_status is not None
        snap = cfs.snapshot()
        assert snap["suspended"] is True and "4 of 8 volumes lost" in snap["problem"]
        eio = 0
        for path, blob in [(data, b""), *files.items()]:  # EIO is right; wrong bytes never are
            try:
                got = await asyncio.to_thread(path.read_bytes)
            except OSError:
                eio += 1
                continue
            assert (hashlib.sha256(got).hexdigest() == want) if not blob else got == blob
        print(f"with 4 lost: zfs says {cfs.last_status.state}; {eio} of 7 reads EIO")
        assert not any("got volume" in h for h in cfs.healer.history)  # no replacement
        for provider in victims:  # the providers restart with their leases and volumes
            source.dead.discard(provider)
            await source.providers[provider].revive()
        await heal(cfs, timeout_s=180)
        assert [s.lease.provider.provider for s in cfs.healer.slots][:4] == victims
        assert "suspended" not in cfs.snapshot()
        assert await asyncio.to_thread(digest, data) == want
        for path, blob in files.items():
            assert await asyncio.to_thread(path.read_bytes) == blob
        assert source.released == []


async def exercise(cfs: Cfs, source: LocalSource, root: Path) -> None:
    assert cfs.healer is not None
    first = [s.lease.provider.provider for s in cfs.healer.slots]
    assert len(set(first)) == 8
    data, want = await written(cfs, root, DATA_MB)
    victims = first[:KILLED]
    reading = asyncio.create_task(asyncio.to_thread(digest, data))
    for provider in victims:
        source.dead.add(provider)
        await source.providers[provider].down()
    assert await reading == want
    # Someone keeps using the pool: the writes reach the dead volumes and fail there.
    await asyncio.to_thread((root / "more").write_bytes, os.urandom(4 << 20))
    started = time.monotonic()
    history = await heal(cfs, timeout_s=240)
    took = time.monotonic() - started
    now = {s.lease.provider.provider for s in cfs.healer.slots}
    assert len(now) == 8 and not now & set(victims)
    assert sorted(source.released) == sorted(victims)
    assert await asyncio.to_thread(digest, data) == want
    assert sum("resilver done" in h for h in history) == KILLED
    print(f"healed {KILLED} volumes in {took:.1f} s; steps: {history}")


async def test_a_hot_spare_takes_the_place_of_a_lost_volume_at_once(tmp_path: Path) -> None:
    async with running_cfs(tmp_path, hot_spare=True) as (cfs, source, root):
        assert cfs.healer is not None
        data, want = await written(cfs, root, 8)
        async with stepping(cfs):
            await until(cfs, lambda: spare_ready(cfs), 60, "a ready spare")
            spare = cfs.healer.spare.lease
            assert spare is not None
            victim = cfs.healer.slots[3].lease.provider.provider
            source.dead.add(victim)
            await source.providers[victim].down()
            started = time.monotonic()
            await until(cfs, lambda: busy(cfs, 3), 120, "slot 3 replacing")
            took = time.monotonic() - started
            history = await until(cfs, lambda: healed(cfs), 240, "the pool ONLINE, none lost")
            await until(cfs, lambda: spare_ready(cfs), 120, "a new spare")
        assert cfs.healer.slots[3].lease.lease_id == spare.lease_id
        assert any("hot spare" in h for h in history)
        assert not any("slot 3: got volume" in h for h in history)  # no offers asked for
        new_spare = cfs.healer.spare.lease
        assert new_spare is not None and new_spare.provider.provider != victim
        assert await asyncio.to_thread(digest, data) == want
        print(f"the spare was replacing {took:.1f} s after the kill; {history}")


async def test_a_hung_bridge_is_noticed_and_logged_in_afresh(tmp_path: Path) -> None:
    """A bridge that stops answering (SIGSTOP: its FUSE requests wait for ever, and so
    does zfs-fuse's I/O to that volume) is called hung after a minute of silence, killed
    and replaced by a fresh login to the same lease; the pool goes on, every byte right."""
    async with running_cfs(tmp_path) as (cfs, source, root):
        assert cfs.healer is not None
        data, want = await written(cfs, root, 8)
        slot = cfs.healer.slots[5]
        lease, pid_file = slot.lease, tmp_path / "bridges" / slot.lease.target.slug / "pid"
        os.kill(int(pid_file.read_text()), signal.SIGSTOP)
        stalls: list[tuple[str, int]] = []

        def noticed() -> bool:
            if cfs.zfs.stall is not None:
                stalls.append(cfs.zfs.stall)
            return any("hung" in h for h in cfs.healer.history)  # type: ignore[union-attr]

        started = time.monotonic()
        async with stepping(cfs) as steps, writing(root) as files:
            await until(cfs, noticed, 240, "the hung bridge noticed")
            took = time.monotonic() - started
            history = await until(cfs, lambda: healed(cfs), 240, "the pool ONLINE, none lost")
        assert cfs.healer.slots[5].lease.lease_id == lease.lease_id  # reattached, not replaced
        assert source.released == []
        assert await asyncio.to_thread(digest, data) == want
        for path, digest_ in files.items():
            assert await asyncio.to_thread(digest, path) == digest_, path
        print(
            f"hung bridge noticed after {took:.0f} s; longest step {max(steps):.1f} s; "
            f"zpool stalls seen: {sorted(set(stalls))}; {len(files)} files; {history}"
        )


def spare_ready(cfs: Cfs) -> bool:
    assert cfs.healer is not None
    return cfs.healer.spare.state is SpareState.READY


async def test_a_restarted_cfs_takes_its_pool_back_from_its_saved_leases(tmp_path: Path) -> None:
    """Stop the CFS (export, detach: what SIGTERM does), start a new one from the lease
    file: the same 8 volumes are attached again, the pool imported, every byte right, the
    leases renewed; a second start with the file edited builds nothing from it."""
    async with running_cfs(tmp_path) as (cfs, source, root):
        assert cfs.healer is not None
        data, want = await written(cfs, root, 8)
        store = LeaseStore(tmp_path / "state" / "leases.json", mac_key(b"k" * 32))
        saved = saved_of(cfs, source)
        assert saved is not None
        store.save(saved)
        await cfs.shutdown()
        again = Cfs(cfs.spec, source=source, attacher=cfs.attacher, zfs=cfs.zfs, policy=cfs.policy)
        loaded = store.load()
        assert loaded is not None
        started = time.monotonic()
        await resume(again, loaded, source)
        took = time.monotonic() - started
        assert again.healer is not None
        assert [s.lease.lease_id for s in again.healer.slots] == [
            s.lease.lease_id for s in cfs.healer.slots
        ]
        await heal(again, timeout_s=60)
        assert await asyncio.to_thread(digest, data) == want
        again.clock = lambda: time.time() + 560  # every lease due for renewal
        await again.step()
        assert sorted(source.renewed) == sorted(s.lease.lease_id for s in again.healer.slots)
        assert source.released == []
        print(f"pool taken back in {took:.1f} s")
        store.path.write_bytes(store.path.read_bytes().replace(b"t", b"u", 1))
        with pytest.raises(LeaseFileError):
            store.load()


@pytest.mark.timeout(1200)
async def test_losses_one_after_another_while_resilvering_heal_without_hanging(
    tmp_path: Path,
) -> None:
    """The lab's hang: the 2nd and 3rd loss come while the 1st is being replaced and
    resilvered, under writes; and a replacement dies during its own resilver. Every step of
    the healing loop stays bounded and the pool ends ONLINE with every byte right."""
    async with running_cfs(tmp_path, count=12) as (cfs, source, root):
        assert cfs.healer is not None
        data, want = await written(cfs, root, 48)
        first = [s.lease.provider.provider for s in cfs.healer.slots]
        async with stepping(cfs) as steps, writing(root) as files:
            for victim in range(3):
                source.dead.add(first[victim])
                await source.providers[first[victim]].down()
                await until(cfs, partial(busy, cfs, victim), 240, f"slot {victim} replacing")
            # the replacement of slot 0 dies in its turn (a 4th provider lost, 3 at a time)
            late = cfs.healer.slots[0].new_lease or cfs.healer.slots[0].lease
            source.dead.add(late.provider.provider)
            await source.providers[late.provider.provider].down()
            history = await until(cfs, lambda: healed(cfs), 420, "the pool ONLINE, none lost")
        now = {s.lease.provider.provider for s in cfs.healer.slots}
        assert len(now) == 8 and not now & source.dead
        assert await asyncio.to_thread(digest, data) == want
        for path, digest_ in files.items():
            assert await asyncio.to_thread(digest, path) == digest_, path
        print(f"longest step {max(steps):.1f} s of {len(steps)}; {len(files)} files; {history}")
        assert max(steps) < 200  # every zpool call is bounded; a step never waits for ever


def busy(cfs: Cfs, slot: int) -> bool:
    assert cfs.healer is not None
    busy_states = (SlotState.QUEUED, SlotState.REPLACING, SlotState.RESILVERING)
    return cfs.healer.slots[slot].state in busy_states


def healed(cfs: Cfs) -> bool:
    assert cfs.healer is not None
    status = cfs.last_status
    return cfs.healer.lost() == 0 and status is not None and status.state == "ONLINE"


async def until(cfs: Cfs, done: Callable[[], bool], timeout_s: float, what: str) -> list[str]:
    """Wait (the stepping task heals) until done() holds; fail with the status if not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not done():
        if loop.time() > deadline:
            raise AssertionError(f"no {what} in {timeout_s} s: {cfs.snapshot()}")
        await asyncio.sleep(0.2)
    assert cfs.healer is not None
    return list(cfs.healer.history)


@contextlib.asynccontextmanager
async def stepping(cfs: Cfs) -> AsyncIterator[list[float]]:
    """The service's watch loop, as `Cfs.run` drives it; yields how long each step took."""
    durations: list[float] = []

    async def loop() -> None:
        while True:
            started = time.monotonic()
            await cfs.step()
            durations.append(time.monotonic() - started)
            await asyncio.sleep(1)

    task = asyncio.create_task(loop(), name="test-cfs-steps")
    try:
        yield durations
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def writing(root: Path) -> AsyncIterator[dict[Path, str]]:
    """Someone keeps writing 1 MiB files meanwhile; yields those written whole (path: digest)."""
    files: dict[Path, str] = {}

    def write(n: int) -> None:
        path, blob = root / f"w{n}", os.urandom(1 << 20)
        with path.open("wb") as f:
            f.write(blob)
            os.fsync(f.fileno())
        files[path] = hashlib.sha256(blob).hexdigest()

    async def loop() -> None:
        for n in range(10_000):
            with contextlib.suppress(OSError):  # EIO while too much is lost is fine
                await asyncio.to_thread(write, n)
            await asyncio.sleep(0.5)

    task = asyncio.create_task(loop(), name="test-cfs-writes")
    try:
        yield files
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
