"""The healing controller over hand-made `zpool status` values and outcomes; time is set by hand."""

from __future__ import annotations

from cfs.actions import Attach, Detach, Obtain, Online, Reattach, Release, Renew, Replace
from cfs.healing import Healer, Policy, SlotState
from tests.unit.cfs_support import candidate, device, lease, status

NOW = 100.0


def healer(expires_at: float = 1000.0) -> Healer:
    return Healer([(lease(n, expires_at), device(n)) for n in range(8)], Policy(renew_margin_s=60))


def all_online() -> dict[str, str]:
    return {device(n): "ONLINE" for n in range(8)}


def with_states(**bad: str) -> dict[str, str]:
    states = all_online()
    for key, state in bad.items():
        states[device(int(key[1:]))] = state
    return states


def test_a_healthy_pool_needs_nothing() -> None:
    h = healer()
    assert h.pool_status(status(all_online()), NOW) == []
    assert h.lost() == 0


def test_lost_volume_reattach_then_replace_resilver_release() -> None:
    h = healer()
    (act,) = h.pool_status(status(with_states(d2="UNAVAIL"), pool_state="DEGRADED"), NOW)
    assert isinstance(act, Reattach) and act.slot == 2 and act.lease.lease_id == "lease-2"
    (obtain,) = h.failed(2, "reattach", "login failed", NOW + 1)
    assert isinstance(obtain, Obtain) and obtain.slot == 2
    assert candidate(2).provider in obtain.avoid
    assert len(obtain.keep) == 7 and candidate(2) not in obtain.keep
    new = lease(9)
    (attach,) = h.obtained(2, new, NOW + 2)
    assert attach == Attach(2, new)
    (replace,) = h.attached(2, new.lease_id, device(9), NOW + 3)
    assert replace == Replace(2, device(2), device(9))
    assert h.replaced(2, NOW + 4) == []
    assert h.slots[2].state is SlotState.RESILVERING
    during = status(
        with_states(d2="UNAVAIL") | {device(9): "ONLINE"},
        scan="resilver in progress, 40.00% done, 0h0m to go",
    )
    assert h.pool_status(during, NOW + 5) == []
    assert h.resilver_percent == 40.0
    after = all_online()
    del after[device(2)]
    after[device(9)] = "ONLINE"
    (release,) = h.pool_status(
        status(after, scan="resilver completed after 0h0m with 0 errors"), NOW + 6
    )
    assert isinstance(release, Release) and release.lease.lease_id == "lease-2"
    slot = h.slots[2]
    assert (slot.lease.lease_id, slot.state) == ("lease-9", SlotState.ONLINE)
    assert h.lost() == 0
    assert any("resilver done" in line for line in h.history)


def test_resilver_not_done_while_old_device_still_listed() -> None:
    h = healer()
    h.pool_status(status(with_states(d1="FAULTED")), NOW)
    h.failed(1, "reattach", "gone", NOW)
    h.obtained(1, lease(9), NOW)
    h.attached(1, "lease-9", device(9), NOW)
    h.replaced(1, NOW)
    both = with_states(d1="UNAVAIL") | {device(9): "ONLINE"}
    assert (
        h.pool_status(status(both, scan="resilver completed after 0h0m with 0 errors"), NOW) == []
    )
    assert h.slots[1].state is SlotState.RESILVERING


def test_provider_back_reattaches_and_onlines_without_replacement() -> None:
    h = healer()
    h.pool_status(status(with_states(d4="UNAVAIL")), NOW)
    (online,) = h.attached(4, "lease-4", device(4), NOW + 1)
    assert online == Online(4, device(4))
    assert h.slots[4].state is SlotState.ONLINE
    # lost again at once: this time it is replaced, not reattached in a loop
    (obtain,) = h.pool_status(status(with_states(d4="UNAVAIL")), NOW + 2)
    assert isinstance(obtain, Obtain)


def test_four_lost_wait_for_volumes_to_come_back_and_never_replace() -> None:
    h = healer()
    bad = with_states(d0="UNAVAIL", d1="UNAVAIL", d2="UNAVAIL", d3="UNAVAIL")
    acts = h.pool_status(status(bad, pool_state="UNAVAIL"), NOW)
    assert [type(a) for a in acts] == [Reattach] * 4
    for n in range(4):
        assert h.failed(n, "reattach", "no route", NOW) == []
    assert h.lost() == 4
    retry = h.next_timer()
    assert retry is not None and retry > NOW
    acts = h.handle_timer(retry)
    assert [type(a) for a in acts] == [Reattach] * 4
    outcomes = [h.attached(n, f"lease-{n}", device(n), retry + 1) for n in range(4)]
    assert [type(a) for (a,) in outcomes] == [Online] * 4
    assert h.lost() == 0


def test_failed_attach_releases_the_new_lease_avoids_its_provider_and_retries() -> None:
    h = healer()
    h.pool_status(status(with_states(d5="UNAVAIL")), NOW)
    h.failed(5, "reattach", "gone", NOW)
    h.obtained(5, lease(10), NOW)
    (release,) = h.failed(5, "attach", "CHAP refused", NOW + 1)
    assert isinstance(release, Release) and release.lease.lease_id == "lease-10"
    assert h.slots[5].state is SlotState.WAITING
    at = h.next_timer()
    assert at is not None
    (obtain,) = h.handle_timer(at)
    assert isinstance(obtain, Obtain) and candidate(10).provider in obtain.avoid
    h.failed(5, "obtain", "no offers", at)
    assert h.slots[5].delay == 4.0  # doubled from retry_s=2


def test_a_stale_grant_is_released() -> None:
    h = healer()
    (release,) = h.obtained(3, lease(11), NOW)
    assert isinstance(release, Release)
    assert h.attached(3, "lease-11", device(11), NOW) == []


def test_renewal_before_expiry_once_and_retry_after_failure() -> None:
    h = healer(expires_at=500.0)
    assert h.next_timer() == 440.0
    assert h.handle_timer(439.0) == []
    renews = h.handle_timer(440.0)
    assert len(renews) == 8 and all(isinstance(a, Renew) for a in renews)
    assert h.handle_timer(441.0) == []  # in flight: not asked twice
    h.renewed(lease(0, expires_at=900.0), 442.0)
    assert h.slots[0].lease.expires_at == 900.0
    h.renew_failed("lease-1", "provider silent", 442.0)
    (again,) = h.handle_timer(444.0)
    assert isinstance(again, Renew) and again.lease.lease_id == "lease-1"


def test_an_expired_lease_is_a_lost_volume_replaced_directly() -> None:
    h = healer(expires_at=500.0)
    for n in range(1, 8):
        h.renewed(lease(n, expires_at=5000.0), 400.0)
    acts = h.handle_timer(500.0)
    assert [type(a) for a in acts] == [Obtain]
    assert h.slots[0].state is SlotState.OBTAINING


def test_renewed_never_shortens_a_lease() -> None:
    old = lease(1, expires_at=900.0)
    assert old.renewed(800.0).expires_at == 900.0


def test_snapshot_shows_providers_states_and_history_without_secrets() -> None:
    h = healer()
    h.pool_status(status(with_states(d6="UNAVAIL")), NOW)
    snap = h.snapshot(NOW)
    volumes = snap["volumes"]
    assert isinstance(volumes, list) and len(volumes) == 8
    assert volumes[6]["state"] == "reattaching" and volumes[6]["provider"] == candidate(6).provider
    text = repr(snap) + repr(h.slots[6].lease)
    assert "s6s6" not in text and h.slots[6].lease.tunnel.private_key.hex() not in text


def resilvering(h: Healer, slot: int = 1, new: int = 9) -> None:
    """Walk slot to RESILVERING onto lease `new` (device(new))."""
    h.pool_status(status(with_states(**{f"d{slot}": "UNAVAIL"})), NOW)
    h.failed(slot, "reattach", "gone", NOW)
    h.obtained(slot, lease(new), NOW)
    h.attached(slot, f"lease-{new}", device(new), NOW)
    h.replaced(slot, NOW)
    assert h.slots[slot].state is SlotState.RESILVERING


def state_of(h: Healer, slot: int) -> SlotState:
    return h.slots[slot].state  # (a call: mypy would keep an earlier narrowing)


RUNNING = "resilver in progress, 10.00% done, 0h1m to go"
DONE = "resilver completed after 0h0m with 0 errors"


def test_a_replacement_dying_during_its_resilver_is_detached_released_and_replaced() -> None:
    h = healer()
    resilvering(h)
    dead = status(with_states(d1="UNAVAIL") | {device(9): "UNAVAIL"}, scan=RUNNING)
    (detach,) = h.pool_status(dead, NOW + 1)
    assert detach == Detach(1, device(9)) and h.slots[1].state is SlotState.ABANDONING
    assert h.pool_status(dead, NOW + 2) == []  # one detach at a time
    release, obtain = h.detached(1, device(9), NOW + 3)
    assert isinstance(release, Release) and release.lease.lease_id == "lease-9"
    assert isinstance(obtain, Obtain) and candidate(9).provider in obtain.avoid
    assert candidate(1).provider in obtain.avoid
    assert h.slots[1].new_lease is None and state_of(h, 1) is SlotState.OBTAINING


def test_a_failed_detach_is_retried_after_the_back_off() -> None:
    h = healer()
    resilvering(h)
    dead = status(with_states(d1="UNAVAIL") | {device(9): "FAULTED"}, scan=RUNNING)
    assert h.pool_status(dead, NOW) == [Detach(1, device(9))]
    assert h.failed(1, "detach", "zpool detach did not finish in 60 s", NOW + 1) == []
    assert state_of(h, 1) is SlotState.RESILVERING  # the next status decides again
    assert h.pool_status(dead, NOW + 1.5) == []
    assert h.pool_status(dead, NOW + 1 + h.policy.retry_s) == [Detach(1, device(9))]


def completed_then_lost(h: Healer) -> None:
    """zfs completed slot 1's replace onto device 9, which is now UNAVAIL."""
    after = all_online()
    del after[device(1)]
    after[device(9)] = "UNAVAIL"
    release, reattach = h.pool_status(status(after, scan=DONE), NOW + 1)
    assert isinstance(release, Release) and release.lease.lease_id == "lease-1"
    assert isinstance(reattach, Reattach) and reattach.lease.lease_id == "lease-9"


def test_a_detach_refused_because_zfs_completed_the_replace_meanwhile() -> None:
    h = healer()
    resilvering(h)
    h.pool_status(status(with_states(d1="UNAVAIL") | {device(9): "UNAVAIL"}), NOW)
    h.failed(1, "detach", "only applicable to mirror and replacing vdevs", NOW)
    completed_then_lost(h)


def test_a_replacement_dying_after_zfs_completed_the_replace_is_an_ordinary_loss() -> None:
    h = healer()
    resilvering(h)
    completed_then_lost(h)
    assert h.slots[1].device == device(9) and h.slots[1].state is SlotState.REATTACHING


def test_a_replacement_missing_from_the_pool_is_released_and_another_obtained() -> None:
    h = healer()
    resilvering(h)
    release, obtain = h.pool_status(status(with_states(d1="UNAVAIL"), scan=DONE), NOW + 1)
    assert isinstance(release, Release) and isinstance(obtain, Obtain)


def test_an_old_device_left_after_the_resilver_is_detached_then_the_slot_completes() -> None:
    h = healer()
    resilvering(h)
    both = status(with_states(d1="UNAVAIL") | {device(9): "ONLINE"}, scan=DONE)
    assert h.pool_status(both, NOW) == [] and h.pool_status(both, NOW) == []
    assert h.pool_status(both, NOW) == [Detach(1, device(1))]
    assert h.failed(1, "detach", "busy", NOW) == []  # stays resilvering; tried again later
    assert h.slots[1].state is SlotState.RESILVERING
    assert h.detached(1, device(1), NOW) == []
    after = all_online()
    del after[device(1)]
    after[device(9)] = "ONLINE"
    (release,) = h.pool_status(status(after, scan=DONE), NOW + 1)
    assert isinstance(release, Release) and state_of(h, 1) is SlotState.ONLINE


def test_losses_one_after_another_while_an_earlier_one_resilvers() -> None:
    """The 2nd and 3rd loss come during the 1st one's resilver: each replacement is obtained
    and attached at once but replaced only after the running resilver ended (a replace
    restarts it, which made zfs-fuse abort in the lab), one at a time, in order."""
    h = healer()
    resilvering(h, slot=1, new=9)
    lost = with_states(d1="UNAVAIL", d2="UNAVAIL", d3="UNAVAIL") | {device(9): "ONLINE"}
    reattaches = h.pool_status(status(lost, scan=RUNNING), NOW)
    assert sorted(a.slot for a in reattaches if isinstance(a, Reattach)) == [2, 3]
    for slot, new in ((2, 10), (3, 11)):
        (obtain,) = h.failed(slot, "reattach", "gone", NOW)
        assert isinstance(obtain, Obtain) and candidate(9) in obtain.keep
        h.obtained(slot, lease(new), NOW)
        assert h.attached(slot, f"lease-{new}", device(new), NOW) == []  # queued
        assert state_of(h, slot) is SlotState.QUEUED
    both = lost | {device(10): "ONLINE", device(11): "ONLINE"}
    assert h.pool_status(status(both, scan=RUNNING), NOW + 1) == []  # still resilvering
    done = dict(both)
    del done[device(1)]
    release, replace = h.pool_status(status(done, scan=DONE), NOW + 2)
    assert isinstance(release, Release) and release.lease.lease_id == "lease-1"
    assert replace == Replace(2, device(2), device(10))
    h.replaced(2, NOW + 3)
    assert h.pool_status(status(done, scan=RUNNING), NOW + 4) == []  # slot 3 still waits
    assert state_of(h, 3) is SlotState.QUEUED and h.lost() == 2


def test_failed_renewals_back_off_up_to_max_retry() -> None:
    h = Healer(
        [(lease(n, 10_000.0), device(n)) for n in range(8)],
        Policy(renew_margin_s=60, retry_s=2, max_retry_s=8),
    )
    now, gaps = 9_940.0, []
    for _ in range(5):
        assert any(isinstance(a, Renew) for a in h.handle_timer(now))
        for n in range(8):
            h.renew_failed(f"lease-{n}", "provider gone", now)
        due = h.next_timer()
        assert due is not None
        gaps.append(due - now)
        now = due
    assert gaps == [2, 4, 8, 8, 8]
    assert sum("renewal failed" in line for line in h.history) == 8  # once per lease


def test_a_replacement_attached_after_a_4th_loss_is_given_back_not_used() -> None:
    h = healer()
    h.pool_status(status(with_states(d1="UNAVAIL")), NOW)
    (obtain,) = h.failed(1, "reattach", "gone", NOW)
    assert isinstance(obtain, Obtain)
    h.obtained(1, lease(9), NOW)
    lost = with_states(d1="UNAVAIL", d2="UNAVAIL", d3="UNAVAIL", d4="UNAVAIL")
    h.pool_status(status(lost), NOW + 1)  # three more lost while it was being obtained
    (release,) = h.attached(1, "lease-9", device(9), NOW + 2)
    assert isinstance(release, Release) and release.lease.lease_id == "lease-9"
    assert state_of(h, 1) is SlotState.WAITING and h.slots[1].new_lease is None
    assert any("held back" in line for line in h.history)


def test_no_timer_is_due_that_handle_timer_would_not_act_on() -> None:
    """A lab run spun its step loop: an expired lease's renewal stayed due for ever."""
    h = Healer([(lease(n, 1000.0), device(n)) for n in range(8)], Policy(hot_spare=True))
    resilvering(h)  # slot 1 not online: no spare is asked for meanwhile
    h.slots[1].lease = lease(1, expires_at=500.0)  # the dead provider's lease lapsed
    now = 600.0
    actions = h.handle_timer(now)
    assert not any(isinstance(a, Renew) and a.lease.lease_id == "lease-1" for a in actions)
    assert not any(isinstance(a, Obtain) for a in actions)
    due = h.next_timer(now)
    assert due is not None and (due > now or h.handle_timer(now) != [])
