"""Bad peers: every attack is dropped and counted, never a crash (STYLE.md 4)."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from rms.gossip import Delivered, Dropped, Gossip, RequestBody, Send, make_request
from rms.gossip.frames import Push, encode_frame
from rms.identity import NodeIdentity
from rms.policy import DEFAULT, Policy
from rms.wire import encode
from rms.wire.messages.node import PING

NOW = 1_700_000_000.0
VPN = uuid.UUID(int=1)
ALICE = NodeIdentity.from_seed(b"a" * 32)  # the requester
MALLORY = NodeIdentity.from_seed(b"m" * 32)  # a member forwarding, forging, flooding


def receiver(policy: Policy = DEFAULT) -> Gossip:
    g = Gossip(NodeIdentity.from_seed(b"r" * 32), random.Random(1), policy, NOW)
    g.set_neighbours(VPN, [MALLORY.public_key, ALICE.public_key, b"o" * 32])
    return g


def request_bytes(
    rid: bytes = b"\x01" * 16, now: float = NOW, hop_limit: int = 4, who: NodeIdentity = ALICE
) -> bytes:
    return make_request(who, RequestBody(rid, "cpu", 2000, hop_limit), now).data


def push(data: bytes, hops: int = 4) -> bytes:
    return encode_frame(Push(hops, data))


def feed(g: Gossip, frame: bytes, now: float = NOW) -> list[object]:
    return list(g.datagram_received(frame, MALLORY.public_key, VPN, now))


def test_forged_signature_is_dropped_and_does_not_block_the_genuine_request() -> None:
    g = receiver()
    genuine = request_bytes()
    forged = genuine[:10] + bytes([genuine[10] ^ 1]) + genuine[11:]
    assert feed(g, push(forged)) == [Dropped("bad_signature", MALLORY.public_key)]
    assert isinstance(feed(g, push(genuine))[0], Delivered)


def test_altered_body_is_dropped() -> None:
    g = receiver()
    genuine = request_bytes()
    altered = genuine.replace(msgpack.packb(2000), msgpack.packb(9999))
    assert altered != genuine
    assert feed(g, push(altered)) == [Dropped("bad_signature", MALLORY.public_key)]


def test_replay_of_an_old_request_is_stale() -> None:
    g = receiver()
    old = request_bytes(now=NOW - DEFAULT.gossip_max_age_s - 1)
    assert feed(g, push(old)) == [Dropped("stale", MALLORY.public_key)]


def test_same_request_id_signed_again_is_delivered_once() -> None:
    g = receiver()
    assert isinstance(feed(g, push(request_bytes(now=NOW)))[0], Delivered)
    again = request_bytes(now=NOW + 1)  # new nonce and time, same id
    assert feed(g, push(again), NOW + 1) == [Dropped("duplicate_id", MALLORY.public_key)]


def test_raising_the_hop_count_gains_nothing_beyond_the_signed_limit() -> None:
    g = receiver()
    data = request_bytes(hop_limit=2)
    out = feed(g, push(data, hops=255))
    delivered = out[0]
    assert isinstance(delivered, Delivered)
    assert delivered.hops_left == 2
    assert {o.data for o in out if isinstance(o, Send)} == {push(data, 1)}


def test_policy_maximum_clamps_a_requester_asking_for_more() -> None:
    g = receiver(replace(DEFAULT, gossip_max_hops=3))
    out = feed(g, push(request_bytes(hop_limit=200), hops=200))
    assert isinstance(out[0], Delivered)
    assert out[0].hops_left == 3


def test_a_forwarder_cutting_hops_cannot_stop_a_later_honest_copy() -> None:
    g = receiver()
    data = request_bytes(hop_limit=8)
    cut = feed(g, push(data, hops=1))
    assert [o for o in cut if isinstance(o, Send)] == []
    honest = g.datagram_received(push(data, hops=8), b"o" * 32, VPN, NOW)
    assert {o.data for o in honest if isinstance(o, Send)} == {push(data, 7)}
    assert g.counts["signature_checks"] == 1
    assert g.datagram_received(push(data, hops=8), ALICE.public_key, VPN, NOW) == []


def test_zero_hops_is_dropped_before_any_check() -> None:
    g = receiver()
    assert feed(g, push(request_bytes(), hops=0)) == [Dropped("no_hops_left", MALLORY.public_key)]
    assert g.counts["signature_checks"] == 0


def test_a_flooding_requester_is_rate_limited() -> None:
    g = receiver()
    out = [feed(g, push(request_bytes(rid=i.to_bytes(16, "big")))) for i in range(30)]
    delivered = sum(isinstance(o[0], Delivered) for o in out)
    assert delivered == DEFAULT.gossip_request_burst
    assert g.status()["dropped"] == {"sender_rate_limited": 30 - delivered}
    assert g.status()["rate_limited_senders"] == 1
    later = NOW + 1 / DEFAULT.gossip_requests_per_s
    assert isinstance(
        feed(g, push(request_bytes(rid=b"\xff" * 16, now=later)), later)[0], Delivered
    )


def test_forgeries_spend_the_forwarder_budget_not_the_requester_budget() -> None:
    g = receiver(replace(DEFAULT, gossip_peer_check_burst=5, gossip_peer_checks_per_s=0.001))
    genuine = request_bytes()
    for i in range(10):
        forged = genuine[:-1] + bytes([i])
        feed(g, push(forged))
    assert g.counts["signature_checks"] == 5
    assert g.dropped["peer_rate_limited"] == 5
    honest = g.datagram_received(push(genuine), b"o" * 32, VPN, NOW)
    assert isinstance(honest[0], Delivered)


def test_dedupe_cannot_be_poisoned_with_the_genuine_id() -> None:
    g = receiver()
    # Mallory signs a request with Alice's id under its own key, and forges one under Alice's.
    feed(g, push(request_bytes(who=MALLORY)))
    genuine = request_bytes()
    feed(g, push(genuine[:-1] + bytes([genuine[-1] ^ 1])))
    assert isinstance(feed(g, push(genuine))[0], Delivered)


def test_dedupe_cache_overflow_forgets_but_never_redelivers() -> None:
    g = receiver(replace(DEFAULT, gossip_dedupe_capacity=4, gossip_request_burst=100))
    first = request_bytes()
    feed(g, push(first))
    for i in range(8):
        feed(g, push(request_bytes(rid=(i + 2).to_bytes(16, "big"))))
    assert g.status()["dedupe_evictions"] != 0
    assert all(not isinstance(o, Delivered) for o in feed(g, push(first)))


def test_garbage_oversized_and_wrong_type_are_dropped() -> None:
    g = receiver()
    big = b"\x00" * (DEFAULT.gossip_max_request_bytes + 1)
    ping = encode(ALICE, PING, {"request_id": b"x"}, NOW)
    assert feed(g, b"") == [Dropped("malformed", MALLORY.public_key)]
    assert feed(g, b"\xc1" * 9000) == [Dropped("oversized", MALLORY.public_key)]
    assert feed(g, push(big)) == [Dropped("oversized", MALLORY.public_key)]
    assert feed(g, push(ping)) == [Dropped("unknown_type", MALLORY.public_key)]
    assert feed(g, msgpack.packb([1, 9, 1])) == [Dropped("malformed", MALLORY.public_key)]


def test_a_stranger_is_not_heard() -> None:
    g = receiver()
    out = g.datagram_received(push(request_bytes()), b"s" * 32, VPN, NOW)
    assert out == [Dropped("not_a_neighbour", b"s" * 32)]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    g = receiver()
    for out in g.datagram_received(data, MALLORY.public_key, VPN, NOW):
        assert isinstance(out, Dropped)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=64), st.integers(0, 300))
def test_arbitrary_frames_never_raise(kind: int, tail: bytes, position: int) -> None:
    g = receiver()
    data = bytearray(push(request_bytes()))
    if data:
        data[position % len(data)] = kind
    g.datagram_received(bytes(data) + tail, MALLORY.public_key, VPN, NOW)
    relay = msgpack.packb([1, 2, tail.ljust(32, b"\x00")[:32], kind, tail])
    g.datagram_received(relay, MALLORY.public_key, VPN, NOW)
    answer = msgpack.packb([1, 1, tail])
    assert all(
        isinstance(o, Dropped) for o in g.datagram_received(answer, MALLORY.public_key, VPN, NOW)
    )
