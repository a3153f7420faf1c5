"""A guardian's last-heard table: expiry, probation of members added while it runs."""

from __future__ import annotations

import pytest

from rms.membership.liveness import Liveness
from rms.policy import Policy

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32


def test_members_tracked_at_start_expire_after_the_whole_expiry() -> None:
    live = Liveness(300.0, 90.0)
    live.track([A, B], 0.0)
    live.heard(A, 100.0)
    assert live.next_expiry() == 300.0
    assert live.expired(299.0) == []
    assert live.expired(300.0) == [B]
    assert live.expired(400.0) == [B, A]


def test_a_newcomer_on_probation_goes_early_unless_heard() -> None:
    live = Liveness(300.0, 90.0)
    live.track([A], 0.0)
    live.track([A, B, C], 10.0, probation=True)
    assert live.on_probation(B) and live.on_probation(C) and not live.on_probation(A)
    live.heard(C, 20.0)
    assert not live.on_probation(C)
    assert live.next_expiry() == 100.0
    assert live.expired(100.0) == [B]
    assert live.expired(300.0) == [A, B]
    assert live.expired(320.0) == [A, B, C]


def test_postponing_and_untracking_end_probation() -> None:
    live = Liveness(300.0, 90.0)
    live.track([A, B], 0.0, probation=True)
    live.postpone(A, 95.0)
    assert live.expired(100.0) == [B]
    assert live.next_expiry() == 90.0
    live.track([A], 100.0, probation=True)  # B left the roster
    assert live.next_expiry() == 395.0 and not live.on_probation(B)
    live.heard(B, 120.0)  # no longer tracked: ignored
    assert live.last_heard(B) is None


@pytest.mark.parametrize(("expiry", "probation"), [(0.0, None), (300.0, 0.0), (300.0, 301.0)])
def test_bad_periods_are_refused(expiry: float, probation: float | None) -> None:
    with pytest.raises(ValueError, match="expiry"):
        Liveness(expiry, probation)


@pytest.mark.parametrize(
    "fields",
    [
        {"member_probation_s": 10.0},  # not above the heartbeat
        {"member_probation_s": 400.0},  # beyond the expiry
        {"member_heartbeat_s": 0.0},
    ],
)
def test_the_policy_refuses_a_probation_members_cannot_meet(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="probation"):
        Policy(**fields)  # type: ignore[arg-type]
