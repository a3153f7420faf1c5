"""The mirror's store and core: merge, caps, expiry, selection, digests, bundles, state file."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import msgpack
import pytest

from rms.discovery import RecordReason, Rejected, VpnRecord
from tests.discovery_support import MEMBERS, NOW, altered, charter, record
from vpn_discovery.mirror import (
    Mirror,
    SyncError,
    decode_bundle,
    decode_digest,
    encode_bundle,
    encode_digest,
)
from vpn_discovery.service import StateFileError, read_state, write_state
from vpn_discovery.store import Outcome, RecordStore, StoreLimits

OTHER = charter(salt=bytes([7]) * 16)


def vpns(count: int, *, soliciting: bool = True) -> list[VpnRecord]:
    """`count` VPNs of the same founder (mind the per-founder quota of 4)."""
    return [
        record(vpn=charter(salt=i.to_bytes(16, "big")), soliciting=soliciting) for i in range(count)
    ]


def test_offer_outcomes_follow_the_selection_rule() -> None:
    store = RecordStore()
    one, two = record(seq=1), record(seq=2)
    assert store.offer(one) is Outcome.ADDED
    assert store.offer(one) is Outcome.UNCHANGED
    assert store.offer(two) is Outcome.UPDATED
    assert store.offer(one) is Outcome.STALE  # rollback refused
    assert store.offer(record(seq=2, members=5)) is Outcome.CONFLICT  # no swap at equal seq
    assert store.get(one.vpn_id) == two
    assert len(store) == 1
    assert Outcome.ADDED.changed and Outcome.UPDATED.changed and not Outcome.STALE.changed


def test_the_store_cap_refuses_new_vpns_but_takes_updates() -> None:
    store = RecordStore(StoreLimits(max_records=2))
    first, second, third = vpns(3)
    assert store.offer(first) is Outcome.ADDED
    assert store.offer(second) is Outcome.ADDED
    assert store.offer(third) is Outcome.FULL
    newer = record(seq=5, vpn=charter(salt=(0).to_bytes(16, "big")))
    assert store.offer(newer) is Outcome.UPDATED


def test_a_founder_quota_limits_one_key_and_expiry_frees_it() -> None:
    store = RecordStore(StoreLimits(per_founder=2))
    a, b, c = vpns(3)
    assert [store.offer(r) for r in (a, b, c)] == [Outcome.ADDED, Outcome.ADDED, Outcome.QUOTA]
    assert store.expire(NOW + 600) == [a, b]
    assert len(store) == 0
    fresh = record(vpn=c.charter, now=NOW + 600)
    assert store.offer(fresh) is Outcome.ADDED


def test_expire_drops_exactly_the_expired() -> None:
    store = RecordStore()
    short, long = record(ttl_s=10), record(vpn=OTHER, ttl_s=100)
    store.offer(short)
    store.offer(long)
    assert store.expire(NOW + 9.999) == []
    assert store.expire(NOW + 10) == [short]
    assert list(store) == [long]


def test_select_picks_soliciting_records_at_random_with_a_seeded_rng() -> None:
    store = RecordStore(StoreLimits(per_founder=20))
    soliciting = vpns(10)
    full = record(vpn=OTHER, soliciting=False)
    for r in [*soliciting, full]:
        store.offer(r)
    picks = store.select(4, random.Random(1))
    assert len(picks) == 4 and full not in picks
    assert picks == store.select(4, random.Random(1))
    assert {r.vpn_id for r in store.select(100, random.Random(2))} == {r.vpn_id for r in soliciting}
    assert store.select(0, random.Random(3)) == []
    seen = {tuple(r.vpn_id for r in store.select(3, random.Random(s))) for s in range(20)}
    assert len(seen) > 10


def test_digests_say_who_lacks_what() -> None:
    mine, theirs = RecordStore(), RecordStore()
    shared_old, shared_new = record(seq=1), record(seq=2)
    only_mine, only_theirs = record(vpn=OTHER), record(vpn=charter(salt=bytes([8]) * 16))
    for r in (shared_new, only_mine):
        mine.offer(r)
    for r in (shared_old, only_theirs):
        theirs.offer(r)
    assert mine.lacks(theirs.digest())  # only_theirs
    assert theirs.lacks(mine.digest())  # shared_new, only_mine
    assert {r.vpn_id for r in mine.newer_than(theirs.digest())} == {
        shared_new.vpn_id,
        only_mine.vpn_id,
    }
    assert mine.newer_than(mine.digest()) == []
    assert not mine.lacks(mine.digest())


def test_bundles_and_digests_round_trip() -> None:
    store = RecordStore()
    for r in vpns(3):
        store.offer(r)
    assert decode_bundle(encode_bundle(store), 10) == [r.raw for r in store]
    assert decode_digest(encode_digest(store.digest()), 10) == store.digest()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb({"a": 1}),
        msgpack.packb(["not bytes"]),
        msgpack.packb([b"x"] * 11),
        msgpack.packb([b"x" * 3000]),
    ],
)
def test_bad_bundles_are_values_not_exceptions(data: bytes) -> None:
    assert isinstance(decode_bundle(data, 10), SyncError)


@pytest.mark.parametrize(
    "entries",
    [
        [[b"x" * 15, 1, 1]],
        [[uuid.uuid4().bytes, -1, 1]],
        [[uuid.uuid4().bytes, 1, True]],
        [[uuid.uuid4().bytes, 1]],
        [[uuid.uuid4().bytes, 1, 1]] * 11,
        "nope",
    ],
)
def test_bad_digests_are_values_not_exceptions(entries: object) -> None:
    assert isinstance(decode_digest(msgpack.packb(entries), 10), SyncError)


def test_the_mirror_verifies_everything_it_receives() -> None:
    mirror = Mirror(RecordStore())
    first = mirror.receive(record().raw, NOW)
    assert first.outcome is Outcome.ADDED and first.changed
    assert mirror.take_dirty() and not mirror.take_dirty()
    bad = mirror.receive(altered(record(seq=2), MEMBERS, 1), NOW)
    assert isinstance(bad.outcome, Rejected)
    assert bad.outcome.reason is RecordReason.BAD_SIGNATURE
    assert not bad.changed and not mirror.dirty
    assert mirror.receive(record().raw, NOW).outcome is Outcome.UNCHANGED
    assert mirror.counts == {"added": 1, "rejected.bad_signature": 1, "unchanged": 1}


def test_a_bundle_is_verified_record_by_record() -> None:
    mirror = Mirror(RecordStore())
    good = record(vpn=OTHER)
    bundle = msgpack.packb([record().raw[:-1], good.raw, good.raw])
    report = mirror.receive_bundle(bundle, NOW)
    assert report.changed == (good,) and report.refused == 1 and report.error is None
    assert mirror.receive_bundle(b"junk", NOW).error is not None


def test_the_plan_pulls_when_the_peer_has_more_and_pushes_what_it_lacks() -> None:
    mirror, peer = Mirror(RecordStore()), RecordStore()
    mirror.receive(record(seq=2).raw, NOW)
    peer.offer(record(seq=1))
    plan = mirror.plan(peer.digest())
    assert not plan.pull and [r.seq for r in plan.push] == [2]
    peer.offer(record(vpn=OTHER))
    assert mirror.plan(peer.digest()).pull


def test_feed_and_bundle_drop_expired_records_first() -> None:
    mirror = Mirror(RecordStore())
    mirror.receive(record(ttl_s=10).raw, NOW)
    mirror.take_dirty()
    assert mirror.feed(16, random.Random(0), NOW + 11) == []
    assert mirror.dirty
    assert decode_bundle(mirror.bundle(NOW + 11), 10) == []


def test_the_state_file_is_written_atomically_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "records.msgpack"
    assert read_state(path, 100) is None
    write_state(path, b"first")
    write_state(path, b"second")
    assert read_state(path, 100) == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["records.msgpack"]
    with pytest.raises(StateFileError, match="larger than 3 bytes"):
        read_state(path, 3)


def test_an_unwritable_state_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateFileError, match="cannot write state file"):
        write_state(blocker / "records.msgpack", b"x")
    with pytest.raises(StateFileError, match="cannot read state file"):
        read_state(tmp_path, 10)


def test_a_restarted_mirror_gets_its_records_back(tmp_path: Path) -> None:
    path = tmp_path / "records.msgpack"
    before = Mirror(RecordStore())
    for r in vpns(3):
        before.receive(r.raw, NOW)
    write_state(path, before.bundle(NOW))
    after = Mirror(RecordStore())
    data = read_state(path, 1 << 20)
    assert data is not None
    assert after.receive_bundle(data, NOW).refused == 0
    assert after.store.digest() == before.store.digest()
