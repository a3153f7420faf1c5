"""Replicating a VPN's signed roster among its members (sans-IO).

Push-pull anti-entropy: every `GOSSIP_INTERVAL_S` (jittered) a member tells `fanout`
random peers which version it holds (`roster.have`); a peer holding an older one fetches
(`roster.get`), a peer holding a newer one pushes it (`roster.put`). A member that takes a
new version passes the news on at once. Every `policy.member_heartbeat_s` a member tells the
guardians it is alive (`roster.heartbeat`) and repeats any request of its own (leave, key
rotation, endpoint) that the roster does not show yet, so a lost message only delays it.
A guardian serves those requests by signing new versions, and removes a member it has not
heard from for `policy.member_expiry_s` (docs/admission.md, "Replication").

The adapter passes whole envelopes and wall-clock `now`, sends each `Deliver` to the
member's management address (port 7947), hands the events to the VPN manager, and re-arms
one timer at `next_timer()`.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable

from rms.membership.document import RosterProblem, SignedRoster
from rms.membership.events import (
    Deliver,
    MessageDropped,
    NoLongerMember,
    RosterAccepted,
    RosterRefused,
    SyncOutput,
)
from rms.membership.issuer import RosterIssuer
from rms.membership.ledger import Adopted, RosterLedger, outranks
from rms.membership.liveness import Liveness
from rms.membership.roster import Endpoint, Roster
from rms.policy import DEFAULT, Policy
from rms.wg.keys import WgPublicKey
from rms.wire import Accepted, Decoder, Envelope, MessageType, encode
from rms.wire.envelope import Signer
from rms.wire.messages.roster import (
    ENDPOINT_UPDATE,
    GET,
    HAVE,
    HEARTBEAT,
    LEAVE,
    PUT,
    ROTATE,
    BodyError,
    EndpointUpdate,
    Get,
    Have,
    Heartbeat,
    Leave,
    Put,
    RosterMessage,
    Rotate,
    parse_roster_message,
)

__all__ = [
    "ANSWER_INTERVAL_S",
    "FETCH_TIMEOUT_S",
    "GOSSIP_FANOUT",
    "GOSSIP_INTERVAL_S",
    "RosterSync",
]

GOSSIP_INTERVAL_S = 10.0
GOSSIP_FANOUT = 3
FETCH_TIMEOUT_S = 5.0  # a get that brought nothing may be repeated after this
FIRST_HEARTBEAT_S = 2.0  # a member speaks soon after it starts: a new one is on probation
ANSWER_INTERVAL_S = 1.0  # at most one roster.put per peer per second: puts are the big ones

Request = Leave | Rotate | EndpointUpdate


class RosterSync:
    """One node's replication of one VPN's roster; a guardian also serves requests."""

    def __init__(
        self,
        identity: Signer,
        ledger: RosterLedger,
        *,
        rng: random.Random,
        now: float,
        issuer: RosterIssuer | None = None,
        policy: Policy = DEFAULT,
        decoder: Decoder | None = None,
        randbytes: Callable[[int], bytes] = os.urandom,
        gossip_interval_s: float = GOSSIP_INTERVAL_S,
        fanout: int = GOSSIP_FANOUT,
    ) -> None:
        if ledger.current is None:
            raise ValueError("roster sync starts from a held roster (the offer's or the founder's)")
        self.identity = identity
        self.ledger = ledger
        self.issuer = issuer
        self.policy = policy
        self._rng = rng
        self._randbytes = randbytes
        self._decoder = Decoder() if decoder is None else decoder
        self._interval = gossip_interval_s
        self._fanout = fanout
        self._next_gossip = now + self._jitter(gossip_interval_s)
        first = min(FIRST_HEARTBEAT_S, policy.member_heartbeat_s)
        self._next_heartbeat = now + self._jitter(first)
        self._fetch: tuple[int, float] | None = None  # (seq asked for, until when)
        self._answered: dict[bytes, float] = {}
        self._requests: dict[type, Request] = {}
        self._liveness = (
            Liveness(policy.member_expiry_s, policy.member_probation_s)
            if issuer is not None
            else None
        )
        self.stats: Counter[str] = Counter()
        self._track(now, probation=False)  # those listed when we start count as heard

    @property
    def key(self) -> bytes:
        """This node's key."""
        return self.identity.public_key

    @property
    def roster(self) -> Roster:
        """The roster version held."""
        current = self.ledger.current
        if current is None:  # checked in __init__; a ledger never drops its roster
            raise RuntimeError("the ledger lost its roster")
        return current.roster

    def next_timer(self) -> float:
        """When `handle_timer` must run next (wall-clock seconds)."""
        times = [self._next_gossip, self._next_heartbeat]
        if self._fetch is not None:
            times.append(self._fetch[1])
        if self._liveness is not None and (due := self._liveness.next_expiry()) is not None:
            times.append(due)
        return min(times)

    def handle_timer(self, now: float) -> list[SyncOutput]:
        """Gossip, heartbeat, retry requests and (guardians) expire silent members."""
        out: list[SyncOutput] = []
        self._track(now)  # the admission core may have added a member since
        if self._fetch is not None and now >= self._fetch[1]:
            self._fetch = None
        if now >= self._next_gossip:
            self._next_gossip = now + self._jitter(self._interval)
            out += self._have_to(self._sample(), now)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self._jitter(self.policy.member_heartbeat_s)
            out += self._heartbeat(now)
        return out + self._expire(now)

    def announce(self, now: float) -> list[SyncOutput]:
        """Tell every member which version we hold: call after the admission core issued one."""
        current = self.roster
        self._settle(current)
        self._track(now)
        return self._have_to(self._peers(), now)

    def request_leave(self, now: float) -> list[SyncOutput]:
        """Ask the guardians to remove this node; repeated until the roster shows it."""
        if self.key in self.roster.guardians:
            raise ValueError("a guardian cannot leave its VPN; hand guardianship over first")
        return self._request(Leave(self.ledger.vpn_id), now)

    def request_rotation(self, wg_public_key: WgPublicKey, now: float) -> list[SyncOutput]:
        """Ask for this node's WireGuard key to become `wg_public_key` (made and kept here)."""
        return self._request(Rotate(self.ledger.vpn_id, wg_public_key.raw), now)

    def request_endpoint(self, endpoint: Endpoint, now: float) -> list[SyncOutput]:
        """Ask for this node's endpoint in the roster to become `endpoint`."""
        return self._request(EndpointUpdate(self.ledger.vpn_id, endpoint), now)

    def message_received(self, data: bytes, now: float) -> list[SyncOutput]:
        """One envelope from a member; never raises on what it holds."""
        result = self._decoder.decode(data, now)
        if not isinstance(result, Accepted):
            return self._dropped(None, f"{result.reason.value}: {result.detail}")
        envelope = result.envelope
        try:
            message = parse_roster_message(envelope)
        except BodyError as exc:
            return self._dropped(envelope.sender, str(exc))
        if message is None or message.vpn_id != self.ledger.vpn_id:
            return self._dropped(envelope.sender, f"{envelope.msg_type.name} is not for this VPN")
        if envelope.sender == self.key:
            return self._dropped(envelope.sender, "our own message came back")
        return self._dispatch(envelope, message, now)

    def _dispatch(self, envelope: Envelope, message: RosterMessage, now: float) -> list[SyncOutput]:
        peer = envelope.sender
        if self._liveness is not None:
            self._liveness.heard(peer, now)  # any signed message shows a member alive
        # The roster carries its own signature, so news of a version is taken from anyone
        # who can reach us; we hand our roster only to members, and to a former member
        # repeating its leave (the roster shows it that it is out).
        if isinstance(message, Have):
            return self._on_have(peer, message, now)
        if isinstance(message, Put):
            return self._on_put(peer, message, now)
        if not self.roster.has(peer):
            return self._from_outsider(peer, envelope.msg_type.name, message, now)
        if isinstance(message, Get):
            return self._answer(peer, now)
        if isinstance(message, Heartbeat):
            return self._on_heartbeat(peer, message, now)
        return self._on_request(peer, message, now)

    def _from_outsider(
        self, peer: bytes, name: str, message: RosterMessage, now: float
    ) -> list[SyncOutput]:
        if isinstance(message, Leave) and self.issuer is not None:
            return self._answer(peer, now)  # already out: show it the roster that says so
        return self._dropped(peer, f"{name} from a non-member")

    def _on_have(self, peer: bytes, have: Have, now: float) -> list[SyncOutput]:
        if self.ledger.would_take(have.seq, have.digest):
            if self._fetch is not None and self._fetch[0] >= have.seq:
                return []  # already fetching that version from someone
            self._fetch = (have.seq, now + FETCH_TIMEOUT_S)
            return [self._deliver(peer, GET, Get(self.ledger.vpn_id).body(), now)]
        newer = outranks(self.ledger.seq, self.ledger.digest, have.seq, have.digest)
        if newer and self.roster.has(peer):
            return self._answer(peer, now)
        return []

    def _on_put(self, peer: bytes, put: Put, now: float) -> list[SyncOutput]:
        verdict = self.ledger.receive(put.roster)
        if isinstance(verdict, RosterProblem):
            self.stats[f"refused_{verdict.reason.value}"] += 1
            return [RosterRefused(peer, verdict), *self._answer(peer, now)]
        if not isinstance(verdict, Adopted):
            return []
        return self._adopted(verdict, peer, now)

    def _on_heartbeat(self, peer: bytes, heartbeat: Heartbeat, now: float) -> list[SyncOutput]:
        if heartbeat.seq < self.ledger.seq:
            return self._answer(peer, now)
        return []

    def _on_request(self, peer: bytes, request: Request, now: float) -> list[SyncOutput]:
        if self.issuer is None:
            return self._dropped(peer, "a request sent to a node that is no guardian")
        issuer, previous = self.issuer, self.ledger.current
        if isinstance(request, Leave):
            signed = issuer.remove(peer, now)
        elif isinstance(request, Rotate):
            signed = issuer.rotate(peer, WgPublicKey(request.wg_public_key), now)
        else:
            signed = issuer.move(peer, request.endpoint, now)
        return self._issued(signed, previous, now)

    def _issued(
        self, signed: SignedRoster | None, previous: SignedRoster | None, now: float
    ) -> list[SyncOutput]:
        if signed is None:
            self.stats["requests_without_change"] += 1
            return []
        self._settle(signed.roster)
        self._track(now)
        self.stats["issued"] += 1
        # A member the new version dropped gets it pushed, so a leaver learns it is out.
        before = set() if previous is None else previous.roster.keys()
        pushed = [p for k in before - signed.roster.keys() for p in self._answer(k, now)]
        return [RosterAccepted(signed, previous, None), *self.announce(now), *pushed]

    def _adopted(self, verdict: Adopted, peer: bytes, now: float) -> list[SyncOutput]:
        signed = verdict.roster
        self.stats["adopted"] += 1
        if self._fetch is not None and signed.seq >= self._fetch[0]:
            self._fetch = None
        self._settle(signed.roster)
        self._track(now)
        out: list[SyncOutput] = [RosterAccepted(signed, verdict.previous, peer)]
        if not signed.roster.has(self.key):
            out.append(NoLongerMember(signed))
        return out + self._have_to([p for p in self._sample() if p != peer], now)

    def _answer(self, peer: bytes, now: float) -> list[SyncOutput]:
        last = self._answered.get(peer)
        if last is not None and 0 <= now - last < ANSWER_INTERVAL_S:
            return []
        self._answered[peer] = now
        current = self.ledger.current
        if current is None:
            return []
        return [self._deliver(peer, PUT, Put(self.ledger.vpn_id, current.data).body(), now)]

    def _heartbeat(self, now: float) -> list[SyncOutput]:
        beat = Heartbeat(self.ledger.vpn_id, self.ledger.seq).body()
        out: list[SyncOutput] = []
        for guardian in self.roster.guardians:
            if guardian == self.key:
                continue
            out.append(self._deliver(guardian, HEARTBEAT, beat, now))
            out += [self._deliver(guardian, *_wire(r), now) for r in self._requests.values()]
        return out

    def _request(self, request: Request, now: float) -> list[SyncOutput]:
        if _done(request, self.roster, self.key):
            return []
        if self.issuer is not None and self.key in self.roster.guardians:
            return self._on_request(self.key, request, now)
        self._requests[type(request)] = request
        guardians = [g for g in self.roster.guardians if g != self.key]
        return [self._deliver(g, *_wire(request), now) for g in guardians]

    def _expire(self, now: float) -> list[SyncOutput]:
        if self._liveness is None or self.issuer is None:
            return []
        out: list[SyncOutput] = []
        for key in self._liveness.expired(now):
            previous = self.ledger.current
            signed = self.issuer.remove(key, now)
            if signed is None:  # no longer ours to remove: look again after another expiry
                self._liveness.postpone(key, now)
                continue
            self.stats["expired"] += 1
            out += self._issued(signed, previous, now)
        return out

    def _settle(self, roster: Roster) -> None:
        """Forget the requests this version shows done."""
        self._requests = {k: r for k, r in self._requests.items() if not _done(r, roster, self.key)}

    def _track(self, now: float, *, probation: bool = True) -> None:
        if self._liveness is not None:
            roster = self.roster
            others = roster.keys() - set(roster.guardians)
            self._liveness.track(others, now, probation=probation)

    def _have_to(self, peers: list[bytes], now: float) -> list[SyncOutput]:
        body = Have(self.ledger.vpn_id, self.ledger.seq, self.ledger.digest).body()
        return [self._deliver(p, HAVE, body, now) for p in peers]

    def _peers(self) -> list[bytes]:
        return [m.node_key for m in self.roster.members if m.node_key != self.key]

    def _sample(self) -> list[bytes]:
        peers = self._peers()
        return self._rng.sample(peers, min(self._fanout, len(peers)))

    def _jitter(self, interval: float) -> float:
        return interval * self._rng.uniform(0.75, 1.25)

    def _dropped(self, peer: bytes | None, reason: str) -> list[SyncOutput]:
        self.stats["dropped"] += 1
        return [MessageDropped(peer, reason[:120])]

    def _deliver(
        self, to: bytes, msg_type: MessageType, body: dict[str, object], now: float
    ) -> Deliver:
        nonce = self._randbytes(16)
        return Deliver(to, encode(self.identity, msg_type, body, now, nonce=nonce))


def _wire(request: Request) -> tuple[MessageType, dict[str, object]]:
    if isinstance(request, Leave):
        return LEAVE, request.body()
    if isinstance(request, Rotate):
        return ROTATE, request.body()
    return ENDPOINT_UPDATE, request.body()


def _done(request: Request, roster: Roster, key: bytes) -> bool:
    """Whether `roster` already shows what `request` asked for."""
    me = roster.member(key)
    if isinstance(request, Leave) or me is None:
        return me is None
    if isinstance(request, Rotate):
        return me.wg_public_key.raw == request.wg_public_key
    return me.endpoint == request.endpoint
