"""Audit reports through the DHT: the record form, what a reader drops, and real DHT services
publishing and fetching over the in-memory network of test_dht_service (no sockets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import msgpack
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rms.audit import report as rep
from rms.audit.dhtrecord import (
    MAX_AGE_S,
    AuditInbox,
    Dropped,
    Watchlist,
    audit_key,
    record_fields,
    report_of,
)
from rms.audit.publish import AuditPublisher
from rms.audit.publish import routes as fetch_routes
from rms.audit.service import AuditService
from rms.audit.service import routes as audit_routes
from rms.config import Config, ContributionSection, NodeSection
from rms.dht.records import AUDIT, RECORD_CONTEXT, RecordError, parse_record, sign_record
from rms.entitlement.service import EntitlementService
from rms.identity import NodeIdentity
from tests.unit.test_dht_service import NOW, VPN_A, FakeNet, Node, mesh, settle, start

AUDITORS = [NodeIdentity.from_seed(bytes([0x30 + i]) * 32) for i in range(3)]
PROVIDER = NodeIdentity.from_seed(b"\x41" * 32)
OTHER = NodeIdentity.from_seed(b"\x42" * 32)


def report(
    auditor: NodeIdentity, failed: int, round_: int = 1, at: float = NOW,
    provider: NodeIdentity = PROVIDER, lease: str = "vol-1",
) -> rep.AuditReport:  # fmt: skip
    body = rep.make_body(auditor.public_key, provider.public_key, lease, round_=round_,
                         at=int(at), kind="scrub", checked=16, failed=failed)  # fmt: skip
    return rep.check(rep.sign_report(body, auditor), at)


def record(
    r: rep.AuditReport, signer: NodeIdentity, fields: dict[str, object] | None = None
) -> bytes:
    return sign_record(signer, AUDIT, 1, NOW + 3600, fields or record_fields(r))


def unchecked(signer: NodeIdentity, fields: dict[str, object]) -> bytes:
    """A record signed by `signer` without the DHT's own checks (what a forger could send)."""
    payload: bytes = msgpack.packb([AUDIT, signer.public_key, 1, int(NOW + 3600), fields])
    return signer.sign(RECORD_CONTEXT + payload) + payload


def dropped(raw: object, provider: bytes = PROVIDER.public_key, now: float = NOW) -> str:
    with pytest.raises(Dropped) as caught:
        report_of(raw, provider, now)
    return caught.value.reason


# -- the record form ----------------------------------------------------------------------


def test_a_report_goes_through_a_record_and_comes_back_exactly() -> None:
    sent = report(AUDITORS[0], failed=3, round_=7)
    raw = record(sent, AUDITORS[0])
    assert len(raw) < 600 and parse_record(raw).key == audit_key(PROVIDER.public_key)
    got = report_of(raw, PROVIDER.public_key, NOW + 10)
    assert got.signed == sent.signed and got.failed == 3 and got.round == 7


def test_the_dht_refuses_audit_records_of_the_wrong_shape() -> None:
    good = record_fields(report(AUDITORS[0], 0))
    with pytest.raises(RecordError, match="provider other than its publisher"):
        sign_record(PROVIDER, AUDIT, 1, NOW, {**good})
    for bad in (
        {**good, "extra": 1},
        {"provider": b"short", "report": good["report"]},
        {"provider": good["provider"], "report": [1, 2, 3]},
        {"provider": good["provider"], "report": ["vol", 1, 2, "scrub", 3, 4, "not bytes"]},
    ):
        with pytest.raises(RecordError):
            sign_record(AUDITORS[0], AUDIT, 1, NOW, bad)
        assert dropped(unchecked(AUDITORS[0], bad)) == "invalid"


def test_forged_altered_and_junk_records_are_dropped() -> None:
    raw = record(report(AUDITORS[0], 0), AUDITORS[0])
    assert dropped(raw[:70] + bytes([raw[70] ^ 1]) + raw[71:]) == "invalid"  # record altered
    assert dropped(b"\x00" * 100) == "invalid" and dropped("text") == "invalid"
    # signed as a record by the auditor, but the report inside was altered after signing
    fields = record_fields(report(AUDITORS[0], 5))
    compact = list(cast(list[object], fields["report"]))
    compact[5] = 0  # failed: 5 -> 0
    forged = {**fields, "report": compact}
    assert dropped(record(report(AUDITORS[0], 5), AUDITORS[0], forged)) == "forged"
    # someone else's signature over the report: the report no longer holds for the publisher
    assert dropped(record(report(AUDITORS[0], 0), AUDITORS[1])) == "forged"


def test_oversized_wrong_key_wrong_kind_stale_and_future_records_are_dropped() -> None:
    assert dropped(b"\x01" * 601) == "oversized"
    about_other = record(report(AUDITORS[0], 0, provider=OTHER), AUDITORS[0])
    assert dropped(about_other) == "wrong_key"
    peer = sign_record(AUDITORS[0], "peer", 1, NOW + 60, {"addrs": [[b"\x00" * 16, "::1", 1]]})
    assert dropped(peer) == "wrong_kind"
    old = record(report(AUDITORS[0], 0, at=NOW - MAX_AGE_S - 1), AUDITORS[0])
    assert dropped(old) == "stale"
    ahead = record(report(AUDITORS[0], 0, at=NOW + 3600), AUDITORS[0])
    assert dropped(ahead) == "forged"  # dated in the future: rms.audit.report refuses it


def test_the_inbox_takes_each_report_once_and_refuses_older_rounds() -> None:
    inbox = AuditInbox(AUDITORS[2].public_key)
    fifth = record(report(AUDITORS[0], 0, round_=5), AUDITORS[0])
    third = record(report(AUDITORS[0], 0, round_=3), AUDITORS[0])
    own = record(report(AUDITORS[2], 0, round_=9), AUDITORS[2])
    assert [r.round for r in inbox.take(PROVIDER.public_key, [fifth, own, b"junk"], NOW)] == [5]
    assert inbox.take(PROVIDER.public_key, [fifth], NOW) == []  # read again: not new
    assert inbox.take(PROVIDER.public_key, [third], NOW) == []  # replayed
    assert inbox.status() == {"taken": 1, "dropped": {"invalid": 1, "replayed": 1}}
    other_lease = record(report(AUDITORS[0], 0, round_=1, lease="vol-2"), AUDITORS[0])
    assert len(inbox.take(PROVIDER.public_key, [other_lease], NOW)) == 1
    restarted = AuditInbox(AUDITORS[2].public_key)
    restarted.seen(report(AUDITORS[0], 0, round_=5))  # held in audits.jsonl before a restart
    assert restarted.take(PROVIDER.public_key, [fifth], NOW) == []


def test_the_watchlist_is_this_node_then_the_providers_it_audited_lately() -> None:
    me = AUDITORS[0].public_key
    watch = Watchlist(me, limit=3)
    assert watch.providers(NOW) == [me]
    for i, p in enumerate((PROVIDER, OTHER, AUDITORS[1], AUDITORS[2])):
        watch.audited(p.public_key, NOW + i)
    assert watch.providers(NOW + 10) == [me, AUDITORS[2].public_key, AUDITORS[1].public_key]
    assert watch.providers(NOW + MAX_AGE_S + 3) == [me, AUDITORS[2].public_key]


# -- through real DHT services ------------------------------------------------------------


class Member:
    """A node: its DHT service, audit service and publisher, sharing the network's clock."""

    def __init__(self, net: FakeNet, seed: int, tmp: Path) -> None:
        self.node = Node(net, seed)
        self.identity = self.node.identity
        config = Config(node=NodeSection(state_dir=tmp),
                        contribution=ContributionSection(storage="1 GiB"))  # fmt: skip
        tmp.mkdir()
        entitlement = EntitlementService(config, net.clock)
        self.audits = AuditService(tmp, self.identity, entitlement, net.clock)
        self.publisher = AuditPublisher(self.audits, self.node.service, self.identity, net.clock)
        self.audits.publish = self.publisher.publish

    def body(self, provider: Member, failed: int, round_: int, now: float) -> dict[str, Any]:
        return rep.make_body(self.identity.public_key, provider.identity.public_key, "vol",
                             round_=round_, at=int(now), kind="scrub", checked=16,
                             failed=failed)  # fmt: skip

    def standing(self, provider: Member) -> str:
        return self.audits.reputation.standing(provider.identity.public_key).value


@pytest.fixture
async def cloud(tmp_path: Path) -> Any:
    net = FakeNet()
    members = [Member(net, 40 + i, tmp_path / f"n{i}") for i in range(5)]
    mesh([m.node for m in members], VPN_A)
    await start([m.node for m in members])
    yield net, members
    for m in members:
        m.node.service.close()
    assert net.bound == {}


async def test_reports_travel_through_the_dht_to_the_provider_and_the_other_clients(
    cloud: Any,
) -> None:
    net, (dropper, honest, c1, c2, c3) = cloud
    nodes = [m.node for m in cloud[1]]
    # one false report against the honest provider, then every client's round
    signed = c1.audits.own_body_signed(c1.body(honest, 16, 1, net.now))
    assert await net.run(nodes, c1.publisher.publish(signed)) >= 1
    for round_ in (2, 3):
        for client in (c1, c2, c3):
            for provider, failed in ((dropper, 2 if client is not c3 else 0), (honest, 0)):
                if (client, provider, round_) == (c1, honest, 2):
                    continue  # c1's false report stays its latest about the honest provider
                mine = client.audits.own_body_signed(client.body(provider, failed, round_, net.now))
                assert await net.run(nodes, client.publisher.publish(mine)) >= 1
        net.now += 1.0
    # the dropper itself watches its own key, the honest provider too
    got = await net.run(nodes, dropper.publisher.fetch())
    assert got["providers"] == 1 and got["taken"] == 3
    assert dropper.standing(dropper) == "warned"
    assert "failed audits" in str(dropper.audits.problem())
    await net.run(nodes, honest.publisher.fetch())
    assert honest.standing(honest) == "ok" and honest.audits.problem() is None
    # each client held only its own reports; the DHT brings the others'
    assert c3.standing(dropper) == "ok"
    await net.run(nodes, c3.publisher.fetch())
    assert c3.standing(dropper) == "warned" and c3.standing(honest) == "ok"
    again = await net.run(nodes, c3.publisher.fetch())  # nothing new the second time
    assert again["taken"] == 0 and c3.audits.reputation.replays == 0


async def test_the_routes_publish_on_sign_and_fetch_on_demand(cloud: Any) -> None:
    net, (provider, client, *_) = cloud
    app = web.Application()
    app.add_routes(audit_routes(client.audits) + fetch_routes(client.publisher))
    async with TestClient(TestServer(app)) as http:
        body = client.body(provider, 0, 1, net.now)
        answer = await http.post("/v1/audits/sign", json={"body": body})
        assert answer.status == 200
        assert (await answer.json())["published"] >= 1
        for bad in ({"provider": "zz"}, {"other": 1}, [1]):
            assert (await http.post("/v1/audits/fetch", json=bad)).status == 400
        assert (await http.post("/v1/audits/fetch", data=b"{" * 300)).status == 413
        fetched = await http.post(
            "/v1/audits/fetch", json={"provider": provider.identity.public_key.hex()}
        )
        assert fetched.status == 200 and (await fetched.json())["providers"] == 1
    await settle()
    assert client.publisher.status()["published"] == 1


async def test_stale_own_records_are_withdrawn(cloud: Any) -> None:
    net, (provider, client, *_) = cloud
    nodes = [m.node for m in cloud[1]]
    mine = client.audits.own_body_signed(client.body(provider, 0, 1, net.now))
    await net.run(nodes, client.publisher.publish(mine))
    key = (audit_key(provider.identity.public_key), client.identity.public_key)
    assert key in client.node.service.core.own
    net.now += MAX_AGE_S + 1
    client.publisher.withdraw_stale()
    assert key not in client.node.service.core.own
