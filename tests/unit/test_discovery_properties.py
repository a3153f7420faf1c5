"""Property tests: record round trips, junk never raises, mutations never pass, stores converge."""

from __future__ import annotations

import ipaddress
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rms.discovery import (
    RecordBody,
    Rejected,
    VpnRecord,
    latest,
    parse_feed,
    sign_record,
    verify_record,
)
from rms.discovery.feed import FeedRejected, ParsedFeed
from rms.wg.keys import WgPrivateKey
from tests.discovery_support import GUARDIAN, NOW, charter, record
from vpn_discovery.server import render_feed
from vpn_discovery.store import RecordStore

RAW = record().raw

public_ips = (
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
    .filter(lambda a: a.is_global and not a.is_multicast)
    .map(str)
)


@st.composite
def bodies(draw: st.DrawFn) -> RecordBody:
    capacity = draw(st.integers(1, 1024))
    return RecordBody(
        public_ips=tuple(draw(st.lists(public_ips, min_size=1, max_size=8, unique=True))),
        guest_port=draw(st.integers(1, 65535)),
        guest_public_key=WgPrivateKey(draw(st.binary(min_size=32, max_size=32))).public_key(),
        guest_private_key=WgPrivateKey(draw(st.binary(min_size=32, max_size=32))),
        soliciting=draw(st.booleans()),
        members=draw(st.integers(0, capacity)),
        capacity=capacity,
    )


@given(bodies(), st.integers(0, 2**63 - 1), st.floats(0.001, 86400.0))
@settings(max_examples=150)
def test_any_valid_body_round_trips(body: RecordBody, seq: int, ttl_s: float) -> None:
    rec = sign_record(GUARDIAN, charter(), body, now=NOW, ttl_s=ttl_s, seq=seq)
    assert verify_record(rec.raw, NOW) == rec
    assert rec.body == body
    assert all(str(ipaddress.ip_address(ip)) == ip for ip in rec.public_ips)


@given(st.binary(max_size=3000))
@settings(max_examples=400)
def test_junk_is_rejected_never_raised(data: bytes) -> None:
    assert isinstance(verify_record(data, NOW), Rejected)


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(RAW)
    kind = draw(st.sampled_from(["replace", "insert", "delete"]))
    at = draw(st.integers(0, len(data) - 1))
    if kind == "replace":
        data[at] = draw(st.integers(0, 255).filter(lambda b: b != RAW[at]))
    elif kind == "insert":
        data.insert(at, draw(st.integers(0, 255)))
    else:
        del data[at]
    return bytes(data)


@given(mutations())
@settings(max_examples=500)
def test_no_mutation_of_a_signed_record_passes(data: bytes) -> None:
    result = verify_record(data, NOW)
    assert isinstance(result, Rejected) or result.raw == RAW


@given(st.binary(max_size=4096))
@settings(max_examples=300)
def test_junk_feeds_never_raise(data: bytes) -> None:
    assert isinstance(parse_feed(data, NOW), ParsedFeed | FeedRejected)


@given(st.text(max_size=400))
@settings(max_examples=300)
def test_junk_inside_rss_never_raises(text: str) -> None:
    for document in (
        f"<rss><channel><item><description>{text}</description></item></channel></rss>",
        f"<rss><channel>{text}</channel></rss>",
        f"<rss>{text}",
    ):
        assert isinstance(
            parse_feed(document.encode("utf-8", "replace"), NOW), ParsedFeed | FeedRejected
        )


SERIES = [record(seq=s) for s in range(1, 6)] + [
    record(seq=s, vpn=charter(salt=bytes([9]) * 16)) for s in (3, 8)
]


@given(st.permutations(SERIES), st.lists(st.sampled_from(SERIES), max_size=20))
@settings(max_examples=200)
def test_stores_converge_whatever_the_order(order: list[VpnRecord], again: list[VpnRecord]) -> None:
    store = RecordStore()
    for rec in [*order, *again]:
        store.offer(rec)
    assert {r.vpn_id: r for r in store} == latest(SERIES)


@given(st.lists(st.sampled_from(SERIES), min_size=1, max_size=10), st.integers(0, 2**32))
@settings(max_examples=100)
def test_a_rendered_feed_parses_back_to_the_winners(picked: list[VpnRecord], seed: int) -> None:
    random.Random(seed).shuffle(picked)
    parsed = parse_feed(render_feed(picked, link="https://d.test/feed.rss", now=NOW), NOW)
    assert isinstance(parsed, ParsedFeed)
    assert parsed.records == latest(sorted(picked, key=lambda r: -r.seq))
    assert parsed.rejected == ()
