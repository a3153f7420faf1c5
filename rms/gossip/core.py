"""The gossip core (sans-IO): broadcast signed resource requests over the management VPNs.

DESIGN.md, "The overlay": broadcast is gossip over the members of each VPN; deduplicate
before verifying, bounded hops, per-sender rate limits; replies go back point to point.

- A node sends a new request once to each of its neighbours, over all its VPNs, except the
  neighbour it came from and the requester: within a VPN (a full mesh) that is flooding, and
  a node in several VPNs carries it into each of the others. Sends per node per request are
  therefore at most the node's degree; the redundancy of a full mesh is what survives loss.
- Dedupe comes first, keyed by SHA-256 of the exact signed bytes: nobody can make a digest
  that suppresses a genuine request without holding that request, so the cache cannot be
  poisoned, and each unique request costs one signature check per node.
- Rate limits: a token bucket per neighbour pays for signature checks (a forger can spend
  only its own link's budget, never the requester's), then one per verified requester.
- Answers go straight to the requester if it is a neighbour, else one hop back along the
  path the request came by (each node remembers its first upstream per request).

Time is wall-clock seconds (`now`), as for the wire decoder. Peer input never raises.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rms.gossip.events import AnswerReceived, Delivered, Dropped, Output, Send
from rms.gossip.frames import AnswerFrame, Push, Relay, decode_frame, encode_frame
from rms.gossip.limits import ExpiringMap, TokenBuckets
from rms.gossip.requests import (
    Answer,
    Request,
    digest_of,
    make_answer,
    make_request,
    open_answer,
    request_from_envelope,
)
from rms.identity import NodeIdentity
from rms.policy import DEFAULT, Policy
from rms.wire.decoder import Accepted, Decoder, DecoderConfig
from rms.wire.messages import gossip as messages
from rms.wire.registry import Registry

__all__ = ["Gossip"]

_MAX_FRAME = 8192  # a request (policy cap) or an answer (4 KiB box), plus the frame
_SWEEP_S = 10.0  # how often refilled rate buckets are forgotten
_FUTURE_S = 30.0  # clock skew tolerated on a request's origin time (as the wire decoder)


@dataclass(slots=True)
class _Seen:
    """What a node remembers of one request digest."""

    upstream: tuple[bytes, uuid.UUID] | None  # first neighbour it came from; None if ours
    requester: bytes | None = None  # set once the signature verified
    hop_limit: int = 0
    forwarded: bool = False


class Gossip:
    """Broadcast of signed resource requests for one node, over all its management VPNs."""

    def __init__(
        self, identity: NodeIdentity, rng: random.Random, policy: Policy = DEFAULT, now: float = 0.0
    ) -> None:
        self.identity = identity
        self.policy = policy
        self._rng = rng
        self._now = now
        self._vpns: dict[uuid.UUID, tuple[bytes, ...]] = {}
        self._targets: dict[bytes, uuid.UUID] = {}  # each neighbour once, with one shared VPN
        self._seen: ExpiringMap[bytes, _Seen] = ExpiringMap(policy.gossip_dedupe_capacity)
        self._ids: ExpiringMap[tuple[bytes, bytes], None] = ExpiringMap(
            policy.gossip_dedupe_capacity
        )
        self._mine: ExpiringMap[bytes, Request] = ExpiringMap(1024)
        self._requesters: TokenBuckets[bytes] = TokenBuckets(
            policy.gossip_requests_per_s,
            policy.gossip_request_burst,
            policy.gossip_rate_table_capacity,
        )
        self._peers: TokenBuckets[bytes] = TokenBuckets(
            policy.gossip_peer_checks_per_s, policy.gossip_peer_check_burst, 1024
        )
        self._decoder = Decoder(
            Registry(messages.TYPES),
            DecoderConfig(
                max_datagram=_MAX_FRAME,
                max_past_s=policy.gossip_max_age_s,
                max_future_s=_FUTURE_S,
                replay_capacity=policy.gossip_dedupe_capacity,
            ),
        )
        self._next_sweep = now + _SWEEP_S
        self.counts: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()

    # -- neighbours -------------------------------------------------------------------------

    def set_neighbours(self, vpn_id: uuid.UUID, peers: Iterable[bytes]) -> None:
        """The members of VPN `vpn_id` (node keys) this node can reach; empty to leave it."""
        members = tuple(dict.fromkeys(p for p in peers if p != self.identity.public_key))
        if members:
            self._vpns[vpn_id] = members
        else:
            self._vpns.pop(vpn_id, None)
        self._targets = {}
        for vpn, keys in sorted(self._vpns.items()):
            for key in keys:
                self._targets.setdefault(key, vpn)

    def _is_neighbour(self, peer: bytes, vpn_id: uuid.UUID) -> bool:
        return peer in self._vpns.get(vpn_id, ())

    # -- broadcasting -----------------------------------------------------------------------

    def broadcast(self, request_body: messages.RequestBody, now: float) -> list[Output]:
        """Sign `request_body` and send it to every neighbour."""
        self._now = now
        hop_limit = min(request_body.hop_limit, self.policy.gossip_max_hops)
        request = make_request(self.identity, request_body, now, nonce=self._rng.randbytes(16))
        expires = now + self.policy.gossip_max_age_s
        self._seen.put(request.digest, _Seen(None, request.requester, hop_limit, True), expires)
        self._ids.put((request.requester, request.request_id), None, expires)
        self._mine.put(request.request_id, request, expires)
        self.counts["broadcasts"] += 1
        return self._forward(request.data, hop_limit, None, request.requester)

    def new_request_id(self) -> bytes:
        """A fresh request id from the node's random source."""
        return self._rng.randbytes(messages.REQUEST_ID_SIZE)

    def _forward(
        self, data: bytes, hops_left: int, source: bytes | None, requester: bytes
    ) -> list[Output]:
        frame = encode_frame(Push(hops_left, data))
        sends: list[Output] = [
            Send(peer, vpn, frame)
            for peer, vpn in self._targets.items()
            if peer not in (source, requester)
        ]
        self.counts["forwarded"] += len(sends)
        return sends

    # -- receiving --------------------------------------------------------------------------

    def datagram_received(
        self, data: bytes, from_peer: bytes, vpn_id: uuid.UUID, now: float
    ) -> list[Output]:
        """Handle one frame from neighbour `from_peer` on VPN `vpn_id`; never raises."""
        self._now = now
        if not self._is_neighbour(from_peer, vpn_id):
            return self._drop("not_a_neighbour", from_peer)
        frame = decode_frame(data, _MAX_FRAME)
        if isinstance(frame, str):
            return self._drop(frame, from_peer)
        if isinstance(frame, Push):
            return self._push(frame, from_peer, vpn_id, now)
        if not self._peers.take(from_peer, now):
            return self._drop("peer_rate_limited", from_peer)
        if isinstance(frame, AnswerFrame):
            return self._answer_for_us(frame.answer, from_peer, now)
        return self._relay(frame, from_peer, now)

    def _push(self, push: Push, peer: bytes, vpn_id: uuid.UUID, now: float) -> list[Output]:
        if push.hops_left < 1:
            return self._drop("no_hops_left", peer)
        if len(push.request) > self.policy.gossip_max_request_bytes:
            return self._drop("oversized", peer)
        digest = digest_of(push.request)
        seen = self._seen.get(digest)
        if seen is not None:  # dedupe before verifying: a copy costs a hash, not a check
            return self._duplicate(seen, push, peer)
        if not self._peers.take(peer, now):
            # Not remembered: a copy from a neighbour with budget left is still checked.
            return self._drop("peer_rate_limited", peer)
        seen = _Seen((peer, vpn_id))
        self._seen.put(digest, seen, now + self.policy.gossip_max_age_s + _FUTURE_S)
        self.counts["signature_checks"] += 1
        request = self._verify(push.request, digest, now)
        if isinstance(request, str):
            return self._drop(request, peer)
        return self._accept(request, seen, push, peer, now)

    def _verify(self, data: bytes, digest: bytes, now: float) -> Request | str:
        result = self._decoder.decode(data, now)
        if not isinstance(result, Accepted):
            return result.reason.value
        if result.envelope.msg_type != messages.REQUEST:
            return "not_a_request"
        request = request_from_envelope(result.envelope, data, digest)
        return "bad_kind" if request is None else request

    def _accept(
        self, request: Request, seen: _Seen, push: Push, peer: bytes, now: float
    ) -> list[Output]:
        key = (request.requester, request.request_id)
        if key in self._ids:  # re-signed under the same id: only the requester can do that
            return self._drop("duplicate_id", peer)
        self._ids.put(key, None, now + self.policy.gossip_max_age_s + _FUTURE_S)
        if not self._requesters.take(request.requester, now):
            return self._drop("sender_rate_limited", peer)
        seen.requester = request.requester
        seen.hop_limit = min(request.body.hop_limit, self.policy.gossip_max_hops)
        hops = min(push.hops_left, seen.hop_limit)
        self.counts["delivered"] += 1
        out: list[Output] = [Delivered(request, peer, hops)]
        if hops > 1:
            seen.forwarded = True
            out += self._forward(request.data, hops - 1, peer, request.requester)
        return out

    def _duplicate(self, seen: _Seen, push: Push, peer: bytes) -> list[Output]:
        self.counts["duplicates"] += 1
        hops = min(push.hops_left, seen.hop_limit)
        if seen.requester is None or seen.forwarded or hops <= 1:
            return []
        # A first copy whose hop count a forwarder had cut to 1 stopped here; a later copy
        # with hops left carries it on, once (docs/broadcast.md, "Hop limits").
        seen.forwarded = True
        self.counts["reforwarded"] += 1
        data = push.request
        return self._forward(data, hops - 1, peer, seen.requester)

    # -- answers ----------------------------------------------------------------------------

    def answer(self, request: Request, offer: Mapping[str, object], now: float) -> list[Output]:
        """Answer a delivered request: a boxed offer, sent back point to point."""
        self._now = now
        data = make_answer(request, offer, self.identity, now)
        self.counts["answers_sent"] += 1
        return self._route(data, request.digest, request.requester, self.policy.gossip_max_hops)

    def _route(self, answer: bytes, digest: bytes, requester: bytes, ttl: int) -> list[Output]:
        vpn = self._targets.get(requester)
        if vpn is not None:
            return [Send(requester, vpn, encode_frame(AnswerFrame(answer)))]
        seen = self._seen.get(digest)
        if seen is None or seen.upstream is None or ttl < 1:
            return self._drop("no_route", None)
        peer, vpn = seen.upstream
        self.counts["relayed"] += 1
        return [Send(peer, vpn, encode_frame(Relay(digest, ttl - 1, answer)))]

    def _relay(self, relay: Relay, peer: bytes, now: float) -> list[Output]:
        seen = self._seen.get(relay.request_digest)
        if seen is None or seen.requester is None:
            return self._drop("unknown_request", peer)
        if seen.upstream is None:  # our own request: the answer has arrived
            return self._answer_for_us(relay.answer, peer, now)
        return self._route(relay.answer, relay.request_digest, seen.requester, relay.ttl)

    def _answer_for_us(self, data: bytes, peer: bytes, now: float) -> list[Output]:
        self.counts["signature_checks"] += 1
        answer = open_answer(data, self.identity, now, self._decoder)
        if not isinstance(answer, Answer):
            return self._drop(f"answer_{answer.reason}", peer)
        request = self._mine.get(answer.request_id)
        if request is None:
            return self._drop("unsolicited_answer", peer)
        self.counts["answers_received"] += 1
        return [AnswerReceived(answer, request)]

    # -- time and status --------------------------------------------------------------------

    def handle_timer(self, now: float) -> list[Output]:
        """Forget expired digests, ids and own requests; sweep refilled rate buckets."""
        self._now = now
        for table in (self._seen, self._ids, self._mine):
            table.expire(now)
        if now >= self._next_sweep:
            self._requesters.forget_full(now)
            self._peers.forget_full(now)
            self._next_sweep = now + _SWEEP_S
        return []

    def next_timer(self) -> float | None:
        """When `handle_timer` should next run, or None if nothing is held."""
        times = [t.next_expiry() for t in (self._seen, self._ids, self._mine)]
        pending = [t for t in times if t is not None]
        if len(self._requesters) or len(self._peers):
            pending.append(self._next_sweep)
        return min(pending, default=None)

    def status(self) -> dict[str, object]:
        """Counters for `rms status`: no keys, no request contents."""
        return {
            "vpns": len(self._vpns),
            "neighbours": len(self._targets),
            "requests_seen": len(self._seen),
            "broadcasts": self.counts["broadcasts"],
            "signature_checks": self.counts["signature_checks"],
            "delivered": self.counts["delivered"],
            "forwarded": self.counts["forwarded"],
            "duplicates": self.counts["duplicates"],
            "answers_sent": self.counts["answers_sent"],
            "answers_received": self.counts["answers_received"],
            "relayed": self.counts["relayed"],
            "dropped": dict(sorted(self.dropped.items())),
            "rate_limited_senders": self._requesters.limited(self._now),
            "dedupe_evictions": self._seen.evicted,
        }

    def _drop(self, reason: str, peer: bytes | None) -> list[Output]:
        self.dropped[reason] += 1
        return [Dropped(reason, peer)]
