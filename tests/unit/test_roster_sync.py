"""Roster replication: the core's messages, requests, expiry, and convergence under loss."""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import TypeVar

import pytest

from rms.membership.document import RosterReason, SignedRoster, sign_roster
from rms.membership.events import (
    Deliver,
    MessageDropped,
    NoLongerMember,
    RosterAccepted,
    RosterRefused,
    SyncOutput,
)
from rms.membership.ledger import RosterLedger
from rms.membership.roster import Endpoint
from rms.membership.sync import RosterSync
from rms.policy import DEFAULT
from rms.wire import Accepted, Decoder, encode
from rms.wire.messages.node import PING, Ping
from rms.wire.messages.roster import GET, HAVE, LEAVE, PUT, ROTATE, Get, Have, Leave, Put, Rotate
from tests.admission_support import (
    GUARDIAN,
    NOW,
    OTHER_VPN,
    STRANGER,
    VPN_ID,
    Vpn,
    found,
    member_of,
    node,
    wg_key,
)

T = TypeVar("T")
TRUSTED = {GUARDIAN.public_key}


def of(outputs: Sequence[object], kind: type[T]) -> list[T]:
    return [o for o in outputs if isinstance(o, kind)]


def vpn_with(members: int) -> Vpn:
    vpn = found()
    for n in range(1, members + 1):
        vpn.issuer.add(member_of(n), NOW)
    return vpn


def guardian_sync(vpn: Vpn, seed: int = 0) -> RosterSync:
    return RosterSync(
        GUARDIAN,
        vpn.ledger,
        issuer=vpn.issuer,
        rng=random.Random(seed),
        now=NOW,
        randbytes=random.Random(f"g{seed}").randbytes,
    )


def member_sync(n: int, roster: SignedRoster, seed: int = 0) -> RosterSync:
    ledger = RosterLedger(VPN_ID, TRUSTED, current=roster)
    return RosterSync(
        node(n),
        ledger,
        rng=random.Random(n * 1000 + seed),
        now=NOW,
        randbytes=random.Random(f"m{n}-{seed}").randbytes,
    )


def deliver(outputs: Sequence[object], to: RosterSync, now: float) -> list[SyncOutput]:
    """Hand every message addressed to `to` over; return what it answers."""
    answers: list[SyncOutput] = []
    for d in of(outputs, Deliver):
        if d.to == to.key:
            answers += to.message_received(d.data, now)
    return answers


def test_a_member_with_an_older_roster_fetches_the_newer_one() -> None:
    vpn = vpn_with(2)
    old = vpn.roster
    guardian = guardian_sync(vpn)
    member = member_sync(1, old)
    vpn.issuer.add(member_of(3), NOW)
    announce = guardian.announce(NOW)
    get = deliver(announce, member, NOW)
    assert [type(o) for o in get] == [Deliver]
    put = deliver(get, guardian, NOW)
    accepted = deliver(put, member, NOW)
    (event,) = of(accepted, RosterAccepted)
    assert event.roster == vpn.roster and event.previous == old
    assert event.source == GUARDIAN.public_key
    assert member.ledger.current == vpn.roster


def test_a_member_with_a_newer_roster_pushes_it() -> None:
    vpn = vpn_with(2)
    old = vpn.roster
    newer = vpn.issuer.add(member_of(3), NOW)
    behind = member_sync(1, old)
    ahead = member_sync(2, newer)
    have = encode(node(1), HAVE, Have(VPN_ID, old.seq, old.digest).body(), NOW)
    pushed = ahead.message_received(have, NOW)
    accepted = deliver(pushed, behind, NOW)
    assert of(accepted, RosterAccepted) and behind.ledger.current == newer


def test_a_rollback_is_refused_and_answered_with_ours() -> None:
    vpn = vpn_with(2)
    old = vpn.roster
    member = member_sync(1, vpn.issuer.add(member_of(3), NOW))
    put = encode(node(2), PUT, Put(VPN_ID, old.data).body(), NOW)
    outputs = member.message_received(put, NOW)
    (refused,) = of(outputs, RosterRefused)
    assert refused.problem.reason is RosterReason.ROLLBACK and refused.peer == node(2).public_key
    (answer,) = of(outputs, Deliver)
    assert answer.to == node(2).public_key


def test_a_roster_from_a_non_guardian_is_refused() -> None:
    vpn = vpn_with(2)
    member = member_sync(1, vpn.roster)
    forged = sign_roster(
        STRANGER,
        vpn.roster.roster.successor(vpn.roster.roster.members, 0).__class__(
            VPN_ID, 99, 0, (STRANGER.public_key,), vpn.roster.roster.members
        ),
    )
    outputs = member.message_received(
        encode(node(2), PUT, Put(VPN_ID, forged.data).body(), NOW), NOW
    )
    (refused,) = of(outputs, RosterRefused)
    assert refused.problem.reason is RosterReason.UNTRUSTED_SIGNER
    assert member.ledger.seq == vpn.roster.seq


def test_leave_is_served_and_the_leaver_learns_it() -> None:
    vpn = vpn_with(2)
    guardian = guardian_sync(vpn)
    member = member_sync(1, vpn.roster)
    request = member.request_leave(NOW)
    outputs = deliver(request, guardian, NOW)
    (accepted,) = of(outputs, RosterAccepted)
    assert not accepted.roster.roster.has(node(1).public_key) and accepted.source is None
    final = deliver(outputs, member, NOW)  # the guardian pushes the version to the leaver
    assert of(final, NoLongerMember)
    assert not of(member.request_leave(NOW + 1), Deliver)  # the roster shows it: done
    leave = encode(node(1), LEAVE, Leave(VPN_ID).body(), NOW + 2)
    again = guardian.message_received(leave, NOW + 2)  # a late repeat is answered
    assert [d.to for d in of(again, Deliver)] == [node(1).public_key]


def types_to(outputs: Sequence[object], to: bytes, now: float) -> list[str]:
    decoder = Decoder()
    names = []
    for d in of(outputs, Deliver):
        result = decoder.decode(d.data, now)
        if d.to == to and isinstance(result, Accepted):
            names.append(result.envelope.msg_type.name)
    return names


def test_rotation_request_is_repeated_until_the_roster_shows_it() -> None:
    vpn = vpn_with(2)
    guardian = guardian_sync(vpn)
    member = member_sync(1, vpn.roster)
    new_key = wg_key(101).public_key()
    member.request_rotation(new_key, NOW)  # lost on the way
    served: list[SyncOutput] = []
    now = NOW
    while not of(served, RosterAccepted):
        now = member.next_timer()
        assert now < NOW + 2 * DEFAULT.member_heartbeat_s
        served = deliver(member.handle_timer(now), guardian, now)
    (accepted,) = of(served, RosterAccepted)
    me = accepted.roster.roster.member(node(1).public_key)
    assert me is not None and me.wg_public_key == new_key
    deliver(deliver(deliver(served, member, now), guardian, now), member, now)
    assert member.ledger.current == vpn.roster
    later: list[str] = []
    while now < NOW + 4 * DEFAULT.member_heartbeat_s:
        now = member.next_timer()
        later += types_to(member.handle_timer(now), GUARDIAN.public_key, now)
    assert "roster.heartbeat" in later and "roster.rotate" not in later


def test_endpoint_request() -> None:
    vpn = vpn_with(2)
    guardian = guardian_sync(vpn)
    member = member_sync(2, vpn.roster)
    endpoint = Endpoint(IPv4Address("198.18.3.4"), 51821)
    (accepted,) = of(deliver(member.request_endpoint(endpoint, NOW), guardian, NOW), RosterAccepted)
    me = accepted.roster.roster.member(node(2).public_key)
    assert me is not None and me.endpoint == endpoint


def test_a_guardian_serves_its_own_rotation_and_cannot_leave() -> None:
    vpn = vpn_with(1)
    guardian = guardian_sync(vpn)
    outputs = guardian.request_rotation(wg_key(200).public_key(), NOW)
    assert of(outputs, RosterAccepted) and len(of(outputs, Deliver)) == 1  # have to member 1
    with pytest.raises(ValueError, match="guardian cannot leave"):
        guardian.request_leave(NOW)


def test_silent_members_expire_and_heartbeats_keep_members() -> None:
    vpn = vpn_with(2)
    guardian = guardian_sync(vpn)
    chatty = member_sync(1, vpn.roster)
    now = NOW
    removed: list[SignedRoster] = []
    while now < NOW + DEFAULT.member_expiry_s + 60:
        now = min(guardian.next_timer(), chatty.next_timer())
        removed += [e.roster for e in of(guardian.handle_timer(now), RosterAccepted)]
        deliver(chatty.handle_timer(now), guardian, now)
        assert guardian.next_timer() > now and chatty.next_timer() > now
    (gone,) = removed
    assert not gone.roster.has(node(2).public_key) and gone.roster.has(node(1).public_key)
    assert NOW + DEFAULT.member_expiry_s <= gone.roster.issued_ms / 1000 < NOW + 330
    assert guardian.stats["expired"] == 1


def test_a_member_added_while_the_guardian_runs_must_speak_within_probation() -> None:
    # Two newcomers are offered places; one never takes it up (its ack was lost, its VPN
    # failed locally), the other starts and heartbeats. Only the silent one goes, and it goes
    # after the probation, not after the whole expiry.
    vpn = vpn_with(0)
    guardian = guardian_sync(vpn)
    vpn.issuer.add(member_of(1), NOW + 1)
    vpn.issuer.add(member_of(2), NOW + 1)
    guardian.announce(NOW + 1)
    taken = member_sync(1, vpn.roster)
    now, removed = NOW + 1, []
    while now < NOW + DEFAULT.member_probation_s + 30:
        now = min(guardian.next_timer(), taken.next_timer())
        removed += [e.roster for e in of(guardian.handle_timer(now), RosterAccepted)]
        deliver(taken.handle_timer(now), guardian, now)
    (gone,) = removed
    assert not gone.roster.has(node(2).public_key) and gone.roster.has(node(1).public_key)
    left_at = gone.roster.issued_ms / 1000
    assert NOW + 1 + DEFAULT.member_probation_s <= left_at < NOW + DEFAULT.member_expiry_s


def test_members_listed_when_a_guardian_starts_get_the_whole_expiry() -> None:
    # A restarted guardian must not take its silent-so-far members for failed admissions.
    vpn = vpn_with(1)
    guardian = guardian_sync(vpn)
    now = NOW + DEFAULT.member_probation_s + 1
    while guardian.next_timer() <= now:
        assert not of(guardian.handle_timer(guardian.next_timer()), RosterAccepted)
    assert guardian.roster.has(node(1).public_key)


def test_requests_from_non_members_and_to_non_guardians_are_dropped() -> None:
    vpn = vpn_with(2)
    guardian = guardian_sync(vpn)
    member = member_sync(1, vpn.roster)
    leave = Leave(VPN_ID).body()
    rotate = Rotate(VPN_ID, wg_key(9).public_key().raw).body()
    outputs = guardian.message_received(encode(STRANGER, ROTATE, rotate, NOW), NOW)
    assert of(outputs, MessageDropped)[0].peer == STRANGER.public_key
    outputs = member.message_received(encode(node(2), LEAVE, leave, NOW), NOW)
    assert "no guardian" in of(outputs, MessageDropped)[0].reason
    outputs = guardian.message_received(encode(STRANGER, GET, Get(VPN_ID).body(), NOW), NOW)
    assert of(outputs, MessageDropped)
    assert vpn.ledger.seq == 3


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"junk" * 30,
        encode(node(2), PING, Ping(b"x").body(), NOW),
        encode(node(2), GET, Get(OTHER_VPN).body(), NOW),
        encode(node(2), HAVE, {"vpn_id": VPN_ID.bytes, "seq": 1, "digest": bytes(32)}, NOW - 500),
    ],
)
def test_bad_messages_are_dropped(data: bytes) -> None:
    member = member_sync(1, vpn_with(2).roster)
    (dropped,) = member.message_received(data, NOW)
    assert isinstance(dropped, MessageDropped)


def test_random_bytes_never_raise() -> None:
    rng = random.Random(8)
    member = member_sync(1, vpn_with(2).roster)
    for _ in range(2000):
        member.message_received(rng.randbytes(rng.randrange(0, 300)), NOW)
    assert member.stats["dropped"] == 2000


def test_answers_are_rate_limited_per_peer() -> None:
    vpn = vpn_with(2)
    guardian = guardian_sync(vpn)
    gets = [encode(node(1), GET, Get(VPN_ID).body(), NOW + i * 0.1) for i in range(5)]
    puts = [of(guardian.message_received(g, NOW + i * 0.1), Deliver) for i, g in enumerate(gets)]
    assert [len(p) for p in puts] == [1, 0, 0, 0, 0]


@dataclass(order=True)
class _Flight:
    at: float
    order: int
    to: bytes = field(compare=False)
    data: bytes = field(compare=False)


class Network:
    """Members over an in-memory network with seeded loss and delay."""

    def __init__(self, nodes: dict[bytes, RosterSync], loss: float, seed: int) -> None:
        self.nodes = nodes
        self.loss = loss
        self.rng = random.Random(seed)
        self.flights: list[_Flight] = []
        self.count = 0
        self.sent = 0
        self.lost = 0

    def send(self, outputs: Sequence[object], now: float) -> None:
        for d in of(outputs, Deliver):
            self.sent += 1
            if self.rng.random() < self.loss or d.to not in self.nodes:
                self.lost += 1
                continue
            self.count += 1
            delay = self.rng.uniform(0.01, 0.3)
            heapq.heappush(self.flights, _Flight(now + delay, self.count, d.to, d.data))

    def run_until(self, end: float) -> float:
        now = NOW
        while True:
            timer_at, sync = min((s.next_timer(), i) for i, s in enumerate(self.nodes.values()))
            flight_at = self.flights[0].at if self.flights else float("inf")
            now = min(timer_at, flight_at)
            if now > end:
                return end
            if flight_at <= timer_at:
                flight = heapq.heappop(self.flights)
                self.send(self.nodes[flight.to].message_received(flight.data, now), now)
            else:
                node_sync = list(self.nodes.values())[sync]
                self.send(node_sync.handle_timer(now), now)


def test_eight_members_converge_under_loss() -> None:
    vpn = vpn_with(7)
    start = vpn.roster
    guardian = guardian_sync(vpn, seed=1)
    members = {node(n).public_key: member_sync(n, start) for n in range(1, 8)}
    net = Network({GUARDIAN.public_key: guardian, **members}, loss=0.2, seed=42)
    # Changes while the members still hold version `start`.
    net.send(members[node(3).public_key].request_rotation(wg_key(300).public_key(), NOW), NOW)
    endpoint = Endpoint(IPv4Address("198.18.0.6"), 51822)
    net.send(members[node(6).public_key].request_endpoint(endpoint, NOW), NOW)
    vpn.issuer.move(node(5).public_key, Endpoint(IPv4Address("198.18.0.5"), 51820), NOW)
    net.send(guardian.announce(NOW), NOW)
    net.run_until(NOW + 120)
    final = vpn.roster
    assert final.seq == start.seq + 3
    three = final.roster.member(node(3).public_key)
    six = final.roster.member(node(6).public_key)
    assert three is not None and three.wg_public_key == wg_key(300).public_key()
    assert six is not None and six.endpoint == endpoint
    assert all(m.ledger.current == final for m in members.values())
    assert net.lost > 0.1 * net.sent


def test_a_leaver_and_an_expired_member_converge_too() -> None:
    vpn = vpn_with(7)
    start = vpn.roster
    guardian = guardian_sync(vpn, seed=2)
    members = {node(n).public_key: member_sync(n, start, seed=2) for n in range(1, 7)}  # 7 is gone
    net = Network({GUARDIAN.public_key: guardian, **members}, loss=0.2, seed=7)
    net.send(members[node(2).public_key].request_leave(NOW), NOW)
    net.run_until(NOW + DEFAULT.member_expiry_s + 120)
    final = vpn.roster.roster
    assert not final.has(node(2).public_key) and not final.has(node(7).public_key)
    assert len(final.members) == 6
    staying = [m for k, m in members.items() if k != node(2).public_key]
    assert all(m.ledger.current == vpn.roster for m in staying)


def test_our_own_messages_coming_back_are_dropped() -> None:
    vpn = vpn_with(2)
    guardian = guardian_sync(vpn)
    vpn.issuer.add(member_of(3), NOW)
    (echo, *_) = of(guardian.announce(NOW), Deliver)
    (dropped,) = guardian.message_received(echo.data, NOW)
    assert isinstance(dropped, MessageDropped) and "own" in dropped.reason
