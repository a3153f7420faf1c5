"""Record seqs strictly increase per key, even when the clock steps back, also across restarts."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from rms.dht import seqfile
from rms.dht.records import (
    PEER,
    Seqs,
    parse_record,
    peer_fields,
    peer_key,
    provider_key,
    sign_record,
)
from rms.dht.seqfile import SeqKeeper
from rms.dht.service import DhtService
from tests.unit.dht_support import NOW, joined, make_node
from tests.unit.test_dht_service import VPN_A, FakeNet, Node, mesh, start

KEY = bytes(range(32))


def test_the_next_seq_is_the_clock_or_one_above_the_last_whichever_is_higher() -> None:
    seqs = Seqs()
    assert seqs.next(KEY, NOW) == int(NOW * 1000)
    seqs.note(KEY, int(NOW * 1000))
    assert seqs.next(KEY, NOW - 3600) == int(NOW * 1000) + 1  # the clock stepped back
    assert seqs.next(KEY, NOW + 1) == int(NOW * 1000) + 1000
    seqs.note(KEY, 5)  # lower: never goes back
    assert seqs.last[KEY] == int(NOW * 1000)


def test_seqs_are_bounded_and_ignore_what_cannot_be_a_seq() -> None:
    seqs = Seqs(capacity=3)
    for i in range(5):
        seqs.note(bytes([i]) * 32, 100 + i)
    assert sorted(seqs.last.values()) == [102, 103, 104]  # the lowest went first
    before = dict(seqs.last)
    seqs.restore({b"short": 1, bytes(32): -1, bytes([9]) * 32: 2**63, bytes([8]) * 32: True})
    assert seqs.last == before


def test_publishing_after_the_clock_stepped_back_still_replaces_the_record() -> None:
    nodes, net = joined(12)
    publisher, asker = nodes[3], nodes[9]
    fields = peer_fields(publisher.config.addresses)
    net.run(publisher, publisher.publish(PEER, fields, net.now)[1])
    first = next(iter(publisher.own.values()))
    # The publisher's clock steps back a minute (the wire still takes its messages); its
    # next record must still win everywhere.
    later = dict(fields, addrs=[[bytes(16), "10.9.9.9", 7947]])
    net.run(publisher, publisher.publish(PEER, later, net.now - 60)[1])
    second = next(iter(publisher.own.values()))
    assert second.seq == first.seq + 1
    assert net.done[-1].result.stored >= 5
    net.run(asker, asker.start_get(peer_key(publisher.key), net.now)[1])
    found = net.done[-1].result.record
    assert found is not None and parse_record(found).seq == second.seq


def test_republishing_with_a_clock_behind_the_last_seq_goes_above_it() -> None:
    node = make_node(1)
    node.publish(PEER, peer_fields(node.config.addresses), NOW + 7200)
    before = next(iter(node.own.values())).seq
    node._republish_at = NOW  # due, and the clock is two hours behind the last record
    node.handle_timer(NOW + 1)
    after = next(iter(node.own.values())).seq
    assert after == before + 1
    assert node.seqs.last[peer_key(node.key)] == after


def test_the_seq_file_round_trips_and_skips_bad_entries(tmp_path: Path) -> None:
    path = tmp_path / seqfile.FILE_NAME
    seqfile.save(path, {KEY: 7, bytes(32): 2**62})
    assert seqfile.load(path) == ({KEY: 7, bytes(32): 2**62}, 0)
    doc = {
        "version": 1,
        "seqs": {
            KEY.hex(): 9,
            "zz" * 32: 1,  # not hex
            "ab": 1,  # not 32 bytes
            (bytes([1]) * 32).hex(): -4,
            (bytes([2]) * 32).hex(): 2**63,  # beyond any seq
            (bytes([3]) * 32).hex(): "12",
            (bytes([4]) * 32).hex(): True,
        },
    }
    path.write_text(json.dumps(doc))
    assert seqfile.load(path) == ({KEY: 9}, 6)
    assert seqfile.load(tmp_path / "absent.json") == ({}, 0)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[1, 2]",
        b'{"version": 2, "seqs": {}}',
        b'{"version": 1, "seqs": []}',
        b"[" * 100_000 + b"]" * 100_000,
        b" " * (seqfile.MAX_BYTES + 1),
    ],
    ids=["malformed", "not-a-map", "other-version", "seqs-not-a-map", "deep", "oversized"],
)
def test_an_unusable_seq_file_is_refused_and_the_node_goes_on(
    tmp_path: Path, content: bytes
) -> None:
    (tmp_path / seqfile.FILE_NAME).write_bytes(content)
    with pytest.raises(seqfile.SeqFileError):
        seqfile.load(tmp_path / seqfile.FILE_NAME)
    seqs, log = Seqs(), _Log()
    keeper = SeqKeeper(tmp_path, seqs, log, Counter())
    assert seqs.last == {} and keeper.saved == 0 and log.events == ["dht.seqs_unreadable"]
    seqs.note(KEY, 3)
    keeper.save()  # the next save rewrites it whole
    assert seqfile.load(tmp_path / seqfile.FILE_NAME) == ({KEY: 3}, 0)


class _Log:
    """A structlog-like logger that keeps what it was told."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def warning(self, event: str, **_: object) -> None:
        self.events.append(event)


def test_a_replayed_older_seq_file_never_lowers_a_seq(tmp_path: Path) -> None:
    seqs = Seqs()
    seqs.note(KEY, 500)
    seqfile.save(tmp_path / seqfile.FILE_NAME, {KEY: 100})  # an old copy put back
    SeqKeeper(tmp_path, seqs, _Log(), Counter())
    assert seqs.last[KEY] == 500


async def test_a_restarted_daemon_with_its_clock_behind_signs_above_its_last_seq(
    tmp_path: Path,
) -> None:
    net = FakeNet()
    a, b = SeqNode(net, 31, tmp_path / "a"), Node(net, 32)
    mesh([a, b], VPN_A)
    await start([a, b])
    first = await a.service.provide("storage", 10, [])
    held = a.service.core.own[(provider_key("storage"), a.identity.public_key)]
    assert first.stored >= 1
    a.service.close()
    # Its clock steps back 20 s while it is down (within the wire's 30 s future window).
    again = SeqNode(net, 31, tmp_path / "a", behind=20.0)
    mesh([again, b], VPN_A)
    await start([again, b])
    second = await again.service.provide("storage", 20, [])
    newer = again.service.core.own[(provider_key("storage"), again.identity.public_key)]
    assert newer.seq == held.seq + 1 and second.stored >= 1
    found = await b.service.find_records(provider_key("storage"))
    assert [parse_record(r).seq for r in found.records] == [newer.seq]
    for node in (again, b):
        node.service.close()


async def test_put_signs_again_a_record_whose_seq_is_not_above_the_last(tmp_path: Path) -> None:
    net = FakeNet()
    a, b = SeqNode(net, 33, tmp_path / "a"), Node(net, 34)
    mesh([a, b], VPN_A)
    await start([a, b])
    fields = peer_fields(a.service.core.config.addresses)
    peer_seq = a.service.core.seqs.last[peer_key(a.identity.public_key)]
    stale = sign_record(a.identity, PEER, peer_seq, net.now + 3600, fields)
    result = await a.service.put(stale)
    assert result.stored >= 1
    own = a.service.core.own[(peer_key(a.identity.public_key), a.identity.public_key)]
    assert own.seq == peer_seq + 1 and own.fields == parse_record(stale).fields
    assert seqfile.load(tmp_path / "a" / seqfile.FILE_NAME)[0][own.key] == own.seq
    for node in (a, b):
        node.service.close()


class SeqNode(Node):
    """A service that keeps its seqs in `state_dir`."""

    def __init__(self, net: FakeNet, seed: int, state_dir: Path, behind: float = 0.0) -> None:
        state_dir.mkdir(exist_ok=True)
        super().__init__(net, seed)
        self.service.close()
        self.service = DhtService(
            self.identity, self.views, rng=random.Random(seed),
            clock=lambda: net.clock() - behind, opener=net.open, state_dir=state_dir,
        )  # fmt: skip
