"""Two newcomers at one guardian at once: both end up admitted (cores only, time by hand)."""

from __future__ import annotations

import random

from rms.admission.events import Admitted, Busy
from rms.admission.planner import AdmissionPlanner, Attempt, Joined, Wait
from rms.wg.keys import WgPublicKey
from tests.admission_support import (
    GUARDIAN,
    NOW,
    Pipe,
    Record,
    found,
    guardian_core,
    node,
    session,
)


def planner(seed: int) -> AdmissionPlanner[Record]:
    return AdmissionPlanner([Record()], rng=random.Random(seed))


def wait_until(p: AdmissionPlanner[Record], now: float) -> float:
    step = p.next_step(now)
    assert isinstance(step, Wait)
    return step.until


def test_second_newcomer_gets_busy_backs_off_and_is_admitted() -> None:
    vpn = found()
    guardian = guardian_core(vpn)
    plan_a, plan_b = planner(1), planner(2)
    assert isinstance(plan_a.next_step(NOW), Attempt)
    assert isinstance(plan_b.next_step(NOW), Attempt)

    a = Pipe(guardian, session(5), conn=1).open(NOW)  # A holds the slot, its challenge in flight
    b = Pipe(guardian, session(6), conn=2).open(NOW + 0.01)
    busy = b.pump(NOW + 0.01)
    assert isinstance(busy, Busy) and busy.reason == "slot"
    plan_b.record(busy, NOW + 0.01)

    admitted_a = a.pump(NOW + 0.02)
    assert isinstance(admitted_a, Admitted)
    plan_a.record(admitted_a, NOW + 0.02)

    retry_at = wait_until(plan_b, NOW + 0.01)
    assert retry_at <= NOW + 0.01 + busy.retry_after_s  # the slot is free by then at the latest
    step = plan_b.next_step(retry_at)
    assert isinstance(step, Attempt) and step.retry == 1
    admitted_b = Pipe(guardian, session(6, attempt=1), conn=3).open(retry_at).pump(retry_at)
    assert isinstance(admitted_b, Admitted)
    plan_b.record(admitted_b, retry_at)

    assert isinstance(plan_a.next_step(retry_at), Joined)
    assert isinstance(plan_b.next_step(retry_at), Joined)
    roster = vpn.roster.roster
    assert roster.keys() == {GUARDIAN.public_key, node(5).public_key, node(6).public_key}
    assert admitted_b.roster == vpn.roster and roster.seq == 3
    keys = {admitted_a.wg_private_key, admitted_b.wg_private_key}
    assert len(keys) == 2
    for admitted in (admitted_a, admitted_b):
        entry = roster.member(admitted.member.node_key)
        assert entry is not None
        assert entry.wg_public_key == admitted.wg_private_key.public_key()


def test_a_stalled_guest_is_outwaited() -> None:
    vpn = found()
    guardian = guardian_core(vpn)
    stalled = Pipe(guardian, session(5), conn=1).open(NOW)  # never answers its challenge
    plan = planner(3)
    now, conn, attempt = NOW + 1, 2, 0
    while not isinstance(plan.next_step(now), Joined):
        step = plan.next_step(now)
        if isinstance(step, Wait):
            now = step.until
            guardian.handle_timer(now)  # the adapter's timer fires when due
            continue
        outcome = Pipe(guardian, session(6, attempt=attempt), conn=conn).open(now).pump(now)
        assert outcome is not None
        plan.record(outcome, now)
        conn, attempt = conn + 1, attempt + 1
    assert NOW + 20 <= now < NOW + 30
    assert stalled.session.outcome is None  # A never answered; the slot went after 20 s
    assert vpn.roster.roster.has(node(6).public_key)
    assert not vpn.roster.roster.has(node(5).public_key)


def test_admitted_keys_are_fresh_per_newcomer() -> None:
    vpn = found()
    guardian = guardian_core(vpn)
    seen: set[WgPublicKey] = set()
    for n in range(5, 12):
        outcome = Pipe(guardian, session(n), conn=n).open(NOW + n).pump(NOW + n)
        assert isinstance(outcome, Admitted)
        seen.add(outcome.wg_private_key.public_key())
    assert len(seen) == 7 and len(vpn.roster.roster.members) == 8
