"""The gossip core: forwarding, dedupe before verifying, hop limits, answers, status."""

from __future__ import annotations

import random
import uuid

from rms.gossip import AnswerReceived, Delivered, Dropped, Gossip, Output, RequestBody, Send
from rms.gossip.frames import AnswerFrame, Push, Relay, decode_frame, encode_frame
from rms.identity import NodeIdentity
from rms.policy import DEFAULT

NOW = 1_700_000_000.0
VPN_A = uuid.UUID(int=1)
VPN_B = uuid.UUID(int=2)


def node(n: int) -> Gossip:
    return Gossip(NodeIdentity.from_seed(bytes([n]) * 32), random.Random(n), DEFAULT, NOW)


def key(g: Gossip) -> bytes:
    return g.identity.public_key


def body(g: Gossip, hop_limit: int = 16) -> RequestBody:
    return RequestBody(g.new_request_id(), "storage", 10**9, hop_limit)


def sends(outputs: list[Output]) -> list[Send]:
    return [o for o in outputs if isinstance(o, Send)]


def mesh(vpn: uuid.UUID, *nodes: Gossip) -> None:
    for g in nodes:
        g.set_neighbours(vpn, [key(x) for x in nodes])


def push_of(out: Send) -> Push:
    frame = decode_frame(out.data, 8192)
    assert isinstance(frame, Push)
    return frame


def test_broadcast_sends_once_to_each_neighbour_over_all_vpns() -> None:
    a, b, c, d = (node(i) for i in range(4))
    mesh(VPN_A, a, b, c)
    mesh(VPN_B, a, c, d)  # c is in both: it still gets one copy
    out = sends(a.broadcast(body(a), NOW))
    assert sorted(o.to_peer for o in out) == sorted([key(b), key(c), key(d)])
    assert all(push_of(o).hops_left == 16 for o in out)


def test_a_bridge_forwards_into_its_other_vpn_but_not_back_to_sender_or_origin() -> None:
    a, b, c, d = (node(i) for i in range(4))
    mesh(VPN_A, a, b, c)
    mesh(VPN_B, b, d)
    to_b = next(o for o in sends(a.broadcast(body(a), NOW)) if o.to_peer == key(b))
    out = b.datagram_received(to_b.data, key(a), VPN_A, NOW)
    assert isinstance(out[0], Delivered)
    fwd = sends(out)
    assert sorted(o.to_peer for o in fwd) == sorted([key(c), key(d)])
    assert {o.vpn_id for o in fwd if o.to_peer == key(d)} == {VPN_B}
    assert all(push_of(o).hops_left == 15 for o in fwd)


def test_a_copy_is_deduplicated_before_any_signature_check() -> None:
    a, b, c = node(0), node(1), node(2)
    mesh(VPN_A, a, b, c)
    data = sends(a.broadcast(body(a), NOW))[0].data
    b.datagram_received(data, key(a), VPN_A, NOW)
    assert b.datagram_received(data, key(c), VPN_A, NOW) == []
    assert b.counts["signature_checks"] == 1
    assert b.counts["duplicates"] == 1
    assert b.counts["delivered"] == 1


def test_hop_limit_one_reaches_neighbours_only() -> None:
    a, b, c = node(0), node(1), node(2)
    mesh(VPN_A, a, b)
    mesh(VPN_B, b, c)
    out = sends(a.broadcast(body(a, hop_limit=1), NOW))
    result = b.datagram_received(out[0].data, key(a), VPN_A, NOW)
    assert isinstance(result[0], Delivered)
    assert result[0].hops_left == 1
    assert sends(result) == []


def test_answer_from_a_neighbour_goes_straight_back_boxed() -> None:
    a, b = node(0), node(1)
    mesh(VPN_A, a, b)
    out = sends(a.broadcast(body(a), NOW))
    delivered = b.datagram_received(out[0].data, key(a), VPN_A, NOW)[0]
    assert isinstance(delivered, Delivered)
    reply = sends(b.answer(delivered.request, {"amount": 5, "addresses": []}, NOW + 1))
    assert [r.to_peer for r in reply] == [key(a)]
    assert isinstance(decode_frame(reply[0].data, 8192), AnswerFrame)
    assert b"amount" not in reply[0].data  # the offer is boxed
    got = a.datagram_received(reply[0].data, key(b), VPN_A, NOW + 1)
    assert isinstance(got[0], AnswerReceived)
    assert got[0].answer.offer["amount"] == 5
    assert got[0].answer.answerer == key(b)


def test_answer_is_relayed_back_along_the_path_of_the_request() -> None:
    a, b, c = node(0), node(1), node(2)
    mesh(VPN_A, a, b)
    mesh(VPN_B, b, c)
    to_b = sends(a.broadcast(body(a), NOW))[0]
    to_c = sends(b.datagram_received(to_b.data, key(a), VPN_A, NOW))[0]
    delivered = c.datagram_received(to_c.data, key(b), VPN_B, NOW)[0]
    assert isinstance(delivered, Delivered)
    relay = sends(c.answer(delivered.request, {"amount": 7, "addresses": []}, NOW))
    assert [r.to_peer for r in relay] == [key(b)]
    assert isinstance(decode_frame(relay[0].data, 8192), Relay)
    onward = sends(b.datagram_received(relay[0].data, key(c), VPN_B, NOW))
    assert [o.to_peer for o in onward] == [key(a)]
    got = a.datagram_received(onward[0].data, key(b), VPN_A, NOW)
    assert isinstance(got[0], AnswerReceived)
    assert got[0].answer.offer["amount"] == 7


def test_an_answer_to_a_request_we_never_made_is_dropped() -> None:
    a, b = node(0), node(1)
    mesh(VPN_A, a, b)
    delivered = b.datagram_received(sends(a.broadcast(body(a), NOW))[0].data, key(a), VPN_A, NOW)[0]
    assert isinstance(delivered, Delivered)
    a2 = node(0)  # same key, but a node that does not remember the request
    mesh(VPN_A, a2, b)
    reply = sends(b.answer(delivered.request, {"amount": 1, "addresses": []}, NOW))[0]
    out = a2.datagram_received(reply.data, key(b), VPN_A, NOW)
    assert out == [Dropped("unsolicited_answer", key(b))]


def test_timer_forgets_expired_requests() -> None:
    a, b = node(0), node(1)
    mesh(VPN_A, a, b)
    data = sends(a.broadcast(body(a), NOW))[0].data
    b.datagram_received(data, key(a), VPN_A, NOW)
    when = b.next_timer()
    assert when is not None
    assert NOW < when <= NOW + DEFAULT.gossip_max_age_s + 60
    b.handle_timer(NOW + 1000)
    assert b.status()["requests_seen"] == 0
    # Forgotten, yet not taken again: the origin time is now outside the window.
    assert b.datagram_received(data, key(a), VPN_A, NOW + 1000) == [Dropped("stale", key(a))]


def test_status_counts_and_holds_no_keys() -> None:
    a, b = node(0), node(1)
    mesh(VPN_A, a, b)
    b.datagram_received(sends(a.broadcast(body(a), NOW))[0].data, key(a), VPN_A, NOW)
    b.datagram_received(b"junk", key(a), VPN_A, NOW)
    status = b.status()
    assert status["delivered"] == 1
    assert status["signature_checks"] == 1
    assert status["dropped"] == {"malformed": 1}
    assert status["neighbours"] == 1
    text = repr(status)
    assert key(a).hex() not in text
    assert key(b).hex() not in text


def test_leaving_a_vpn_removes_its_neighbours() -> None:
    a, b = node(0), node(1)
    mesh(VPN_A, a, b)
    a.set_neighbours(VPN_A, [])
    assert sends(a.broadcast(body(a), NOW)) == []
    frame = encode_frame(Push(3, b"x"))
    assert a.datagram_received(frame, key(b), VPN_A, NOW) == [Dropped("not_a_neighbour", key(b))]
