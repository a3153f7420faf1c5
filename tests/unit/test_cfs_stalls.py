"""The healing loop never waits for ever: hung zpool commands, hung actions, 4 lost.

Over the fakes of tests/unit/test_cfs_service.py (the real zfs-fuse behaviour is in
tests/integration/test_cfs_healing.py): a command cut at its bound is a failure that is
retried, shown in the `pool` section and, when it keeps happening, logged as an error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from cfs import service
from cfs.healing import SlotState
from cfs.service import Cfs
from cfs.zfs.status import PoolStatus, ZfsError, ZfsTimeout
from tests.unit.test_cfs_service import FakePool, FakeSource, make


async def lost_one(slot: int) -> tuple[Cfs, FakeSource, FakePool]:
    """A built pool whose slot's provider died and whose device zfs calls UNAVAIL."""
    cfs, src, _, pool, _ = make()
    await cfs.build()
    assert cfs.healer is not None
    lost = cfs.healer.slots[slot]
    src.dead.add(lost.lease.provider.provider)
    pool.devices[lost.device] = "UNAVAIL"
    return cfs, src, pool


async def test_a_hung_replace_is_retried_and_shown_in_the_status() -> None:
    cfs, src, pool = await lost_one(2)
    assert cfs.healer is not None
    calls = 0

    async def hung(name: str, old: str, new: Path) -> None:
        nonlocal calls
        calls += 1
        pool.stall = ("zpool replace", calls)
        raise ZfsTimeout("zpool replace did not finish in 60 s")

    pool.replace = hung  # type: ignore[method-assign]
    now = 100.0
    cfs.clock = lambda: now
    with capture_logs() as logs:
        for _ in range(3):
            await cfs.step()
            now += 100.0  # past every back-off
    snap = cfs.snapshot()
    assert snap["stalled"] == {"command": "zpool replace", "in_a_row": 3}
    assert "zpool replace hit its time bound" in snap["problem"]
    assert calls == 3 and cfs.healer.lost() == 1
    # a cut replace may still land (the lab saw one land on a volume already given back):
    # each new lease is kept until a status shows its device missing, then given back
    assert len(src.released) == 2 and cfs.healer.slots[2].new_lease is not None
    assert [e["event"] for e in logs].count("cfs.zfs_stalled") == 1


async def test_an_action_that_hangs_is_cut_and_the_loop_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfs, _, pool = await lost_one(1)
    assert cfs.healer is not None
    monkeypatch.setattr(service, "ACTION_TIMEOUT_S", 0.05)

    async def forever(name: str, device: str) -> None:
        await asyncio.Event().wait()

    pool.offline = forever  # type: ignore[method-assign]
    with capture_logs() as logs:
        await asyncio.wait_for(cfs.step(), 5)
    assert any(e["event"] == "cfs.action_stalled" for e in logs)
    assert cfs.healer.slots[1].state is SlotState.WAITING
    assert any("replace failed: did not finish" in h for h in cfs.healer.history)


async def test_a_hung_status_leaves_the_renewals_running() -> None:
    cfs, src, _, pool, _ = make()
    await cfs.build()

    async def hung(name: str) -> PoolStatus:
        pool.stall = ("zpool status", 1)
        raise ZfsTimeout("zpool status did not finish in 20 s")

    pool.status = hung  # type: ignore[method-assign]
    cfs.clock = lambda: 9_950.0  # every lease is due
    await cfs.step()
    assert len(src.renewed) == 8
    assert cfs.snapshot()["problem"] == "zpool status did not finish in 20 s"


async def test_four_lost_say_the_pool_is_suspended_and_replace_nothing() -> None:
    cfs, src, ini, pool, _ = make()
    await cfs.build()
    assert cfs.healer is not None
    for slot in cfs.healer.slots[:4]:
        src.dead.add(slot.lease.provider.provider)
        ini.broken.add(slot.lease.target.slug)
    await cfs.step()
    snap = cfs.snapshot()
    assert snap["suspended"] is True and cfs.healer.lost() == 4
    assert "4 of 8 volumes lost" in snap["problem"]
    assert not any(c.startswith("replace") for c in pool.calls)


async def test_leases_are_renewed_while_a_step_waits_on_a_long_replace() -> None:
    cfs, src, pool = await lost_one(0)
    waiting, go_on = asyncio.Event(), asyncio.Event()

    async def long(name: str, old: str, new: Path) -> None:
        waiting.set()
        await go_on.wait()

    pool.replace = long  # type: ignore[method-assign]
    stop = asyncio.Event()
    running = asyncio.create_task(cfs.run(stop))
    await asyncio.wait_for(waiting.wait(), 5)
    cfs.clock = lambda: 9_950.0  # every lease is due now, in the middle of the replace
    for _ in range(100):
        if len(src.renewed) >= 7:
            break
        await asyncio.sleep(0.05)
    assert len(src.renewed) >= 7  # the 7 live ones (and the new one), not after the replace
    go_on.set()
    stop.set()
    await asyncio.wait_for(running, 5)


async def test_the_watch_loop_never_spins() -> None:
    cfs, _, _, pool, _ = make()
    await cfs.build()

    async def gone(name: str) -> PoolStatus:
        raise ZfsError("zpool status failed: connect: Connection refused")

    pool.status = gone  # type: ignore[method-assign]
    await cfs.step()
    assert cfs._next_wait() == cfs.policy.poll_s  # the daemon is gone: wait a whole poll
    pool.status = FakePool.status.__get__(pool)  # type: ignore[method-assign]
    await cfs.step()
    cfs.clock = lambda: 9_999.0  # every lease about to lapse, renewals in flight or not
    assert cfs._next_wait() >= service.MIN_WAIT_S
