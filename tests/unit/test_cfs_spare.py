"""The optional hot spare: obtained when the pool is whole, taken at once on a loss."""

from __future__ import annotations

from pathlib import Path

from cfs.actions import Attach, Obtain, Reattach, Release, Renew, Replace
from cfs.attach import Attacher
from cfs.healing import Healer, Policy, SlotState
from cfs.service import Cfs, PoolSpec
from cfs.spare import SPARE, SpareState
from rms.cli.status import render_pool
from rms.wg.fake import FakeDriver
from rms.wg.manager import WireGuard
from tests.unit.cfs_support import GIB, POOL, candidate, device, lease, status
from tests.unit.test_cfs_service import OWN, FakeInitiator, FakePool, FakeSource

NOW = 100.0


def healer(spare: bool = True) -> Healer:
    members = [(lease(n), device(n)) for n in range(8)]
    return Healer(members, Policy(renew_margin_s=60, retry_s=2, max_retry_s=8, hot_spare=spare))


def with_spare(h: Healer, n: int = 9) -> None:
    (obtain,) = h.handle_timer(NOW)
    assert isinstance(obtain, Obtain) and obtain.slot == SPARE and len(obtain.keep) == 8
    got = lease(n)
    (attach,) = h.obtained(SPARE, got, NOW)
    assert attach == Attach(SPARE, got)
    assert h.attached(SPARE, f"lease-{n}", device(n), NOW) == []
    assert h.spare.state is SpareState.READY


def lose(h: Healer, slot: int) -> list[object]:
    states = {device(n): "ONLINE" for n in range(8)} | {device(slot): "UNAVAIL"}
    (reattach,) = h.pool_status(status(states), NOW + 1)
    assert isinstance(reattach, Reattach)
    return list(h.failed(slot, "reattach", "gone", NOW + 2))


def test_no_spare_unless_asked() -> None:
    h = healer(spare=False)
    assert h.handle_timer(NOW) == [] and "spare" not in h.snapshot(NOW)


def test_the_spare_is_obtained_attached_renewed_and_shown() -> None:
    h = healer()
    with_spare(h)
    assert h.snapshot(NOW)["spare"] == {
        "state": "ready", "provider": candidate(9).provider, "lease": "lease-9",
        "device": device(9), "lease_expires_in_s": 900.0,
    }  # fmt: skip
    assert candidate(9) in h.keep(3)  # a replacement never lands on the spare's provider
    renewals = h.handle_timer(950.0)
    assert any(isinstance(a, Renew) and a.lease.lease_id == "lease-9" for a in renewals)


def test_a_loss_takes_the_spare_at_once_and_a_new_spare_follows_when_whole() -> None:
    h = healer()
    with_spare(h)
    (replace,) = lose(h, 2)
    assert replace == Replace(2, device(2), device(9))
    assert h.slots[2].state is SlotState.REPLACING and h.spare.state is SpareState.NONE
    assert not any(isinstance(a, Obtain) for a in h.handle_timer(NOW + 3))  # still healing
    h.replaced(2, NOW + 4)
    after = {device(n): "ONLINE" for n in range(8) if n != 2} | {device(9): "ONLINE"}
    (release,) = h.pool_status(status(after, scan="resilver completed"), NOW + 5)
    assert isinstance(release, Release) and release.lease.lease_id == "lease-2"
    (obtain,) = h.handle_timer(NOW + 6)
    assert isinstance(obtain, Obtain) and obtain.slot == SPARE
    assert candidate(9) in obtain.keep and candidate(2).provider not in obtain.avoid


def test_a_spare_that_does_not_fit_the_slot_is_kept_and_a_replacement_obtained() -> None:
    h = healer()
    with_spare(h)
    h.slots[2].avoid.add(candidate(9).provider)  # e.g. it failed this slot before
    h.slots[2].state = SlotState.WAITING
    h.slots[2].retry_at = NOW
    (obtain,) = [a for a in h.handle_timer(NOW + 1) if isinstance(a, Obtain)]
    assert obtain.slot == 2 and h.spare.state is SpareState.READY


def test_a_failed_spare_is_released_and_retried_after_a_back_off() -> None:
    h = healer()
    h.handle_timer(NOW)
    h.obtained(SPARE, lease(9), NOW)
    (release,) = h.failed(SPARE, "attach", "login refused", NOW)
    assert isinstance(release, Release) and release.lease.lease_id == "lease-9"
    assert h.handle_timer(NOW + 1) == []
    (obtain,) = h.handle_timer(NOW + 2)
    assert isinstance(obtain, Obtain) and candidate(9).provider in obtain.avoid


def test_a_late_or_stray_spare_grant_is_released() -> None:
    h = healer()
    (release,) = h.obtained(SPARE, lease(9), NOW)  # nobody asked for it
    assert isinstance(release, Release)
    assert h.attached(SPARE, "lease-77", device(9), NOW) == []


async def test_the_service_keeps_a_spare_and_heals_with_it_without_new_offers() -> None:
    src, pool, wg = FakeSource(), FakePool(), FakeDriver()
    ini = FakeInitiator(src)
    cfs = Cfs(
        PoolSpec(POOL, Path("/srv/cfs"), GIB, OWN),
        source=src,
        attacher=Attacher(WireGuard(wg), ini),
        zfs=pool,
        policy=Policy(renew_margin_s=60, retry_s=1, hot_spare=True),
        clock=lambda: 100.0,
    )
    await cfs.build()
    assert cfs.healer is not None
    await cfs.step()
    spare = cfs.healer.spare.lease
    assert spare is not None and cfs.healer.spare.state is SpareState.READY
    assert len(wg.interfaces) == 9
    lost = cfs.healer.slots[4]
    src.dead.add(lost.lease.provider.provider)
    pool.devices[lost.device] = "UNAVAIL"
    asked = src.offers

    async def no_offers(size: int) -> list[object]:
        raise AssertionError("the spare should have been used")

    src.offers = no_offers  # type: ignore[assignment,method-assign]
    await cfs.step()
    assert cfs.healer.slots[4].new_lease == spare
    src.offers = asked  # type: ignore[method-assign]
    await cfs.step()
    assert cfs.healer.slots[4].lease == spare and cfs.healer.lost() == 0
    await cfs.shutdown()
    assert not wg.interfaces


def test_rms_status_shows_the_spare_and_a_suspended_pool() -> None:
    h = healer()
    with_spare(h)
    section = {"name": POOL, "state": "ONLINE", **h.snapshot(NOW), "problem": "4 of 8 lost"}
    text = "\n".join(render_pool(section))
    assert f"spare  {candidate(9).provider[:16]}  ready" in text
    assert "problem: 4 of 8 lost" in text
