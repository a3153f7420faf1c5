"""Reputation over simulated audit rounds: droppers are caught, honest providers are not."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from rms.audit import report as rep
from rms.audit.report import BlockLog
from rms.audit.reputation import Reputation, Standing, StandingChanged
from rms.identity import NodeIdentity
from rms.policy import Policy

HOUR = 3600
POLICY = Policy()
GRACE_ROUNDS = int(POLICY.audit_grace_s // HOUR)
PROVIDER = NodeIdentity.from_seed(b"\x40" * 32)
CLIENTS = [NodeIdentity.from_seed(bytes([0x50 + i]) * 32) for i in range(8)]


@dataclass
class Provider:
    """A provider's disk: it keeps a write unless it drops it."""

    drop_rate: float
    rng: random.Random
    blocks: dict[tuple[int, int], bytes] = field(default_factory=dict)

    def write(self, client: int, block: int, data: bytes) -> None:
        if self.rng.random() >= self.drop_rate:
            self.blocks[client, block] = data

    def read(self, client: int, block: int) -> bytes | None:
        return self.blocks.get((client, block))


@dataclass
class World:
    provider: Provider
    liars: set[int] = field(default_factory=set)
    reputation: Reputation = field(default_factory=lambda: Reputation(POLICY))
    logs: list[BlockLog] = field(default_factory=lambda: [BlockLog() for _ in CLIENTS])
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    events: list[StandingChanged] = field(default_factory=list)
    round: int = 0
    written: int = 0

    def step(self) -> None:
        """One hour: every client writes 32 blocks, then challenges 16 and reports."""
        self.round += 1
        now = self.round * HOUR
        for i, client in enumerate(CLIENTS):
            for _ in range(32):
                data = self.rng.randbytes(64)
                self.provider.write(i, self.written, data)
                self.logs[i].wrote(self.written, data)
                self.written += 1
            picked = self.logs[i].challenge(self.rng, 16)
            checked, failed = self.logs[i].judge({b: self.provider.read(i, b) for b in picked})
            if i in self.liars:
                failed = checked
            self.report(client, checked, failed, now)
        self.events += self.reputation.tick(now)

    def report(self, client: NodeIdentity, checked: int, failed: int, now: int) -> None:
        body = rep.make_body(client.public_key, PROVIDER.public_key, "vol", round_=self.round,
                             at=now, kind="read", checked=checked, failed=failed)  # fmt: skip
        verified = rep.check(rep.sign_report(body, client), now)
        self.events += self.reputation.add(verified, now)

    def standing(self) -> Standing:
        return self.reputation.standing(PROVIDER.public_key)


def test_a_provider_dropping_writes_is_warned_at_once_and_penalised_after_the_grace() -> None:
    world = World(Provider(drop_rate=0.1, rng=random.Random(2)))
    warned_at = penalised_at = None
    while penalised_at is None and world.round < GRACE_ROUNDS + 10:
        world.step()
        if warned_at is None and world.standing() is Standing.WARNED:
            warned_at = world.round
        if world.standing() is Standing.PENALISED:
            penalised_at = world.round
    assert warned_at is not None and warned_at <= 2
    assert penalised_at is not None and penalised_at <= GRACE_ROUNDS + 3
    assert world.reputation.factor(PROVIDER.public_key) == POLICY.audit_penalty_factor
    assert world.reputation.summary(PROVIDER.public_key)["score"] < 0.5  # type: ignore[operator]


def test_honest_providers_keep_their_reputation() -> None:
    world = World(Provider(drop_rate=0.0, rng=random.Random(3)))
    for _ in range(200):
        world.step()
    assert world.events == []
    assert world.reputation.summary(PROVIDER.public_key)["score"] == 1.0
    assert world.standing() is Standing.OK
    assert world.reputation.factor(PROVIDER.public_key) == 1.0


def test_a_single_false_reporter_never_warns_or_penalises() -> None:
    world = World(Provider(drop_rate=0.0, rng=random.Random(4)), liars={5})
    for _ in range(GRACE_ROUNDS * 3):
        world.step()
    assert world.events == []
    assert world.standing() is Standing.OK


def test_two_colluding_reporters_can_warn_but_not_penalise_against_six_honest() -> None:
    world = World(Provider(drop_rate=0.0, rng=random.Random(5)), liars={1, 2})
    for _ in range(GRACE_ROUNDS * 3):
        world.step()
    assert world.standing() is Standing.WARNED
    assert all(e.new is not Standing.PENALISED for e in world.events)


def test_an_owner_who_repairs_in_the_grace_period_is_not_penalised() -> None:
    provider = Provider(drop_rate=0.2, rng=random.Random(6))
    world = World(provider)
    for _ in range(6):
        world.step()
    assert world.standing() is Standing.WARNED
    provider.drop_rate = 0.0  # the owner replaced the disk; the pool resilvers it
    for i, log in enumerate(world.logs):
        for block in log.blocks():
            provider.blocks.setdefault((i, block), b"")
    world.logs = [BlockLog() for _ in CLIENTS]  # the clients re-seed their logs after resilver
    for _ in range(GRACE_ROUNDS):
        world.step()
    assert world.standing() is Standing.OK
    assert [e.new for e in world.events] == [Standing.WARNED, Standing.OK]


def test_a_penalised_provider_that_mends_its_ways_is_restored_as_old_failures_decay() -> None:
    provider = Provider(drop_rate=0.3, rng=random.Random(7))
    world = World(provider)
    while world.standing() is not Standing.PENALISED:
        world.step()
    provider.drop_rate = 0.0
    world.logs = [BlockLog() for _ in CLIENTS]
    for _ in range(GRACE_ROUNDS * 4):
        world.step()
        if world.standing() is Standing.OK:
            break
    assert world.standing() is Standing.OK
    assert world.events[-1].reason.startswith("restored")


def test_a_replayed_or_older_report_is_ignored() -> None:
    reputation = Reputation(POLICY)
    client = CLIENTS[0]
    body = rep.make_body(client.public_key, PROVIDER.public_key, "vol", round_=3, at=HOUR,
                         kind="scrub", checked=10, failed=10)  # fmt: skip
    report = rep.check(rep.sign_report(body, client), HOUR)
    reputation.add(report, HOUR)
    reputation.add(report, HOUR)
    older = dict(body, round=2)
    reputation.add(rep.check(rep.sign_report(older, client), HOUR), HOUR)
    assert reputation.replays == 2
    assert reputation.summary(PROVIDER.public_key)["failing_auditors"] == 1


def test_evidence_decays_with_the_half_life() -> None:
    reputation = Reputation(POLICY)
    for i, client in enumerate(CLIENTS[:2]):
        body = rep.make_body(client.public_key, PROVIDER.public_key, "vol", round_=i, at=0,
                             kind="read", checked=1, failed=1)  # fmt: skip
        reputation.add(rep.check(rep.sign_report(body, client), 0), 0)
    record = reputation.records[PROVIDER.public_key]
    assert record.bad == 2.0
    reputation.tick(POLICY.audit_half_life_s)
    assert record.bad == 1.0
