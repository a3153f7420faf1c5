"""Which version a node holds (rollback, conflicts) and the guardian's new versions."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

import pytest

from rms.membership.document import RosterProblem, RosterReason, sign_roster, verify_roster
from rms.membership.issuer import RosterIssuer
from rms.membership.ledger import Adopted, Held, RosterLedger, outranks
from rms.membership.roster import Endpoint
from tests.admission_support import (
    GUARDIAN,
    NOW,
    STRANGER,
    VPN_ID,
    found,
    member_of,
    node,
    wg_key,
)

TRUSTED = {GUARDIAN.public_key}


def follower() -> RosterLedger:
    return RosterLedger(VPN_ID, TRUSTED)


def test_newer_is_adopted_same_is_held_older_is_a_rollback() -> None:
    vpn = found()
    v1 = vpn.roster
    v2 = vpn.issuer.add(member_of(5), NOW)
    v3 = vpn.issuer.add(member_of(6), NOW + 1)
    ledger = follower()
    assert ledger.seq == 0 and ledger.digest == b""
    assert ledger.receive(v2.data) == Adopted(v2, None)
    assert ledger.receive(v3.data) == Adopted(v3, v2)
    assert ledger.receive(v3.data) == Held(v3)
    for old in (v1, v2):
        problem = ledger.receive(old.data)
        assert isinstance(problem, RosterProblem) and problem.reason is RosterReason.ROLLBACK
    assert ledger.current == v3


def test_two_versions_with_one_seq_settle_on_the_higher_digest() -> None:
    base = found().roster.roster
    a = sign_roster(GUARDIAN, base.adding(member_of(5), int(NOW * 1000)))
    b = sign_roster(GUARDIAN, base.adding(member_of(6), int(NOW * 1000)))
    high, low = (a, b) if a.digest > b.digest else (b, a)
    one, two = follower(), follower()
    one.receive(low.data)
    one.receive(high.data)
    two.receive(high.data)
    lost = two.receive(low.data)
    assert isinstance(lost, RosterProblem) and lost.reason is RosterReason.CONFLICT_LOST
    assert one.current == two.current == high
    assert outranks(2, high.digest, 2, low.digest) and not outranks(1, b"\xff", 2, b"")


def test_forged_and_untrusted_rosters_are_refused() -> None:
    ledger = follower()
    v2 = found().issuer.add(member_of(5), NOW)
    forged = bytearray(v2.data)
    forged[-1] ^= 1
    assert isinstance(ledger.receive(bytes(forged)), RosterProblem)
    stranger_roster = dataclasses.replace(v2.roster, guardians=(STRANGER.public_key,), seq=9)
    signed = sign_roster(STRANGER, stranger_roster)
    problem = ledger.receive(signed.data)
    assert isinstance(problem, RosterProblem) and problem.reason is RosterReason.UNTRUSTED_SIGNER
    assert ledger.current is None
    problem = ledger.consider(signed)
    assert isinstance(problem, RosterProblem) and problem.reason is RosterReason.UNTRUSTED_SIGNER


def test_trust_follows_the_delegation() -> None:
    roster = dataclasses.replace(
        found().roster.roster, guardians=(GUARDIAN.public_key, STRANGER.public_key), seq=5
    )
    by_second = sign_roster(STRANGER, roster)
    ledger = follower()
    assert isinstance(ledger.receive(by_second.data), RosterProblem)
    ledger.trust({GUARDIAN.public_key, STRANGER.public_key})
    assert isinstance(ledger.receive(by_second.data), Adopted)


def test_a_ledger_refuses_an_untrusted_start() -> None:
    with pytest.raises(ValueError, match="trust"):
        RosterLedger(VPN_ID, {STRANGER.public_key}, current=found().roster)


def test_issued_versions_verify_and_count_up() -> None:
    vpn = found()
    v2 = vpn.issuer.add(member_of(5), NOW)
    v3 = vpn.issuer.rotate(node(5).public_key, wg_key(55).public_key(), NOW + 1)
    endpoint = Endpoint(IPv4Address("198.18.0.5"), 51820)
    v4 = vpn.issuer.move(node(5).public_key, endpoint, NOW + 2)
    v5 = vpn.issuer.remove(node(5).public_key, NOW + 3)
    versions = [v2, v3, v4, v5]
    assert [v.seq if v else None for v in versions] == [2, 3, 4, 5]
    for v in versions:
        assert v is not None
        assert verify_roster(v.data, vpn_id=VPN_ID, trusted_guardians=TRUSTED) == v
    assert v3 is not None and v4 is not None and v5 is not None
    me = v3.roster.member(node(5).public_key)
    assert me is not None and me.wg_public_key == wg_key(55).public_key()
    moved = v4.roster.member(node(5).public_key)
    assert moved is not None and moved.endpoint == endpoint
    assert moved.wg_public_key == wg_key(55).public_key()  # the rotation is kept
    assert not v5.roster.has(node(5).public_key) and vpn.ledger.current == v5
    assert v5.roster.issued_ms == int((NOW + 3) * 1000)


def test_requests_that_change_nothing_sign_nothing() -> None:
    vpn = found()
    vpn.issuer.add(member_of(5), NOW)
    vpn.issuer.add(member_of(6), NOW)
    seq = vpn.ledger.seq
    assert vpn.issuer.remove(STRANGER.public_key, NOW) is None
    assert vpn.issuer.remove(GUARDIAN.public_key, NOW) is None
    assert vpn.issuer.rotate(node(5).public_key, wg_key(6).public_key(), NOW) is None
    assert vpn.issuer.rotate(STRANGER.public_key, wg_key(77).public_key(), NOW) is None
    endpoint = Endpoint(IPv4Address("198.18.0.5"), 51820)
    assert vpn.issuer.move(node(5).public_key, endpoint, NOW) is not None
    assert vpn.issuer.move(node(5).public_key, endpoint, NOW) is None
    assert vpn.ledger.seq == seq + 1


def test_a_guardian_dropped_from_the_roster_stops_issuing() -> None:
    vpn = found()
    vpn.issuer.add(member_of(5), NOW)
    roster = dataclasses.replace(
        vpn.roster.roster, guardians=(STRANGER.public_key,), seq=vpn.ledger.seq + 1
    )
    vpn.ledger.trust({GUARDIAN.public_key, STRANGER.public_key})
    assert isinstance(vpn.ledger.consider(sign_roster(STRANGER, roster)), Adopted)
    assert not vpn.issuer.can_issue()
    assert vpn.issuer.remove(node(5).public_key, NOW) is None


def test_an_issuer_needs_trust_and_a_roster() -> None:
    with pytest.raises(ValueError, match="not a trusted guardian"):
        RosterIssuer(found().ledger, STRANGER)
    with pytest.raises(ValueError, match="roster first"):
        RosterIssuer(RosterLedger(VPN_ID, TRUSTED), GUARDIAN)


def test_adding_a_duplicate_is_our_bug() -> None:
    vpn = found()
    vpn.issuer.add(member_of(5), NOW)
    with pytest.raises(ValueError, match="already"):
        vpn.issuer.add(member_of(5), NOW)
