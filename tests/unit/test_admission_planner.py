"""Choosing a VPN and backing off: seeded, with time set by hand."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace

import pytest

from rms.admission.events import Admitted, Busy, Failed, Refused
from rms.admission.planner import (
    AdmissionPlanner,
    Attempt,
    ClockIsOff,
    Joined,
    NoVpnFits,
    Wait,
    busy_retries,
)
from rms.policy import Policy
from tests.admission_support import (
    NOW,
    VPN_ID,
    Record,
    admit,
    found,
    guardian_core,
    node,
    session,
)

GUARDIAN_KEY = node(1).public_key


def vpn(n: int | uuid.UUID, **kw: object) -> Record:
    """VPN n's record (3 members of 8, founded by node 1), with some fields changed."""
    vpn_id = n if isinstance(n, uuid.UUID) else uuid.UUID(int=n)
    return replace(Record(vpn_id, members=3, founder_key=GUARDIAN_KEY), **kw)  # type: ignore[arg-type]


def attempted(step: object) -> Record:
    assert isinstance(step, Attempt)
    record = step.candidate
    assert isinstance(record, Record)
    return record


def test_full_closed_excluded_and_duplicate_vpns_are_skipped() -> None:
    records = [
        vpn(1, members=8),
        vpn(2, soliciting=False),
        vpn(3),
        vpn(4),
        vpn(3, members=4),
        vpn(5),
    ]
    planner = AdmissionPlanner(records, rng=random.Random(1), exclude={uuid.UUID(int=5)})
    assert planner.remaining == 2
    tried = set()
    for _ in range(2):
        record = attempted(planner.next_step(NOW))
        tried.add(record.vpn_id.int)
        planner.record(Refused(record.vpn_id, "full", "full"), NOW)
    assert tried == {3, 4}
    step = planner.next_step(NOW)
    assert isinstance(step, NoVpnFits) and len(step.tried) == 2
    assert all("refused (full)" in why for _, why in step.tried)


def test_the_choice_is_seeded_and_independent_of_input_order() -> None:
    records = [vpn(n) for n in range(1, 21)]
    first = attempted(AdmissionPlanner(records, rng=random.Random(9)).next_step(NOW))
    again = attempted(AdmissionPlanner(records[::-1], rng=random.Random(9)).next_step(NOW))
    assert first == again
    picks = {
        attempted(AdmissionPlanner(records, rng=random.Random(s)).next_step(NOW)) for s in range(40)
    }
    assert len(picks) > 5  # newcomers spread over the VPNs


def test_no_candidate_means_found_a_new_vpn() -> None:
    step = AdmissionPlanner([vpn(1, members=8)], rng=random.Random(0)).next_step(NOW)
    assert step == NoVpnFits(())


def test_busy_backs_off_doubling_with_jitter_then_moves_on() -> None:
    policy = Policy()
    planner = AdmissionPlanner([vpn(1), vpn(2)], rng=random.Random(4), policy=policy)
    first = attempted(planner.next_step(NOW))
    now = NOW
    retries = busy_retries(policy)
    for retry in range(1, retries + 1):
        planner.record(Busy(first.vpn_id, "slot", 100.0), now)
        step = planner.next_step(now)
        assert isinstance(step, Wait)
        base = min(0.5 * 2 ** (retry - 1), 8.0)
        assert base / 2 <= step.until - now <= base
        assert isinstance(planner.next_step(step.until - 0.001), Wait)
        now = step.until
        again = planner.next_step(now)
        assert isinstance(again, Attempt) and again.retry == retry and again.candidate == first
    assert now - NOW >= policy.guest_slot_timeout_s  # even the shortest draws outwait a slot
    planner.record(Busy(first.vpn_id, "slot", 100.0), now)
    second = attempted(planner.next_step(now))
    assert second != first
    assert planner.next_step(now) == Attempt(second, 0)


def test_retries_are_just_enough_to_outwait_one_slot() -> None:
    assert busy_retries(Policy()) == 9  # 0.25+0.5+1+2+4+4+4+4 = 19.75 < 20 <= 23.75
    assert busy_retries(Policy(guest_slot_timeout_s=0.1)) == 1


def test_a_taken_slot_bounds_the_wait_and_a_rate_limit_sets_it() -> None:
    planner = AdmissionPlanner([vpn(1)], rng=random.Random(4))
    slot = planner.backoff_s(1, Busy(VPN_ID, "slot", 12.0))
    assert 0.25 <= slot <= 0.5
    assert planner.backoff_s(5, Busy(VPN_ID, "slot", 1.5)) == 1.5
    assert planner.backoff_s(1, Busy(VPN_ID, "slot", 0.001)) == 0.25
    assert planner.backoff_s(1, Busy(VPN_ID, "rate", 12.0)) == 12.0
    assert planner.backoff_s(1, Busy(VPN_ID, "rate", 500.0)) == 60.0
    record = attempted(planner.next_step(NOW))
    planner.record(Busy(record.vpn_id, "rate", 12.0), NOW)
    assert planner.next_step(NOW) == Wait(NOW + 12.0)


def test_failure_moves_on_and_success_joins() -> None:
    planner = AdmissionPlanner([vpn(1), vpn(VPN_ID)], rng=random.Random(5))
    first = attempted(planner.next_step(NOW))
    assert first.vpn_id != VPN_ID  # this seed tries the unreachable one first
    planner.record(Failed(first.vpn_id, "cannot reach the guardian"), NOW)
    record = attempted(planner.next_step(NOW))
    assert record.vpn_id == VPN_ID and planner.remaining == 1
    joined = admit(guardian_core(found()), session(5), 1, NOW)
    assert isinstance(joined, Admitted)
    planner.record(joined, NOW)
    assert planner.next_step(NOW) == Joined(joined)
    assert planner.next_step(NOW + 100) == Joined(joined)


def test_a_clock_refusal_stops_the_search() -> None:
    planner = AdmissionPlanner([vpn(1), vpn(2)], rng=random.Random(2))
    record = attempted(planner.next_step(NOW))
    refused = Refused(record.vpn_id, "clock", "your clock is off")
    planner.record(refused, NOW)
    assert planner.next_step(NOW) == ClockIsOff(refused)


def test_an_outcome_for_another_vpn_is_our_bug() -> None:
    planner = AdmissionPlanner([vpn(1)], rng=random.Random(2))
    with pytest.raises(ValueError, match="did not ask"):
        planner.record(Refused(VPN_ID, "full", "x"), NOW)
