"""What the broadcast hands to local services, and what it keeps for them (sans-IO).

The gossip core emits `Delivered` for each verified request of someone else and
`AnswerReceived` for each opened answer to one of this node's requests. Local services (the
Volume Provider, the CFS) are other processes: they reach these through the control API
(rms.gossip.exchange). The inbox keeps, in bounded memory:

- the last `capacity` delivered requests, numbered by a sequence number that only grows,
  so a long poll asks "what came after N" and a slow poller learns how many it missed;
- the requests still answerable, by digest (the handle a service answers with);
- the answers to this node's own requests, by request id, at most `per_request` each, for
  the last `own_capacity` request ids.

Requests older than the broadcast's age limit are forgotten: answering them would be
refused as stale by the requester anyway.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from rms.gossip.requests import Answer, Request

__all__ = ["Inbox", "Numbered"]


@dataclass(frozen=True, slots=True)
class Numbered:
    """A delivered request with its inbox sequence number and arrival time."""

    seq: int
    request: Request
    hops_left: int
    received: float  # wall-clock seconds


class Inbox:
    """Recent requests for local services; answers to our own requests."""

    def __init__(
        self,
        capacity: int = 256,
        max_age_s: float = 60.0,
        own_capacity: int = 64,
        per_request: int = 256,
    ) -> None:
        if min(capacity, own_capacity, per_request) < 1:
            raise ValueError("inbox capacities must be positive")
        self._requests: deque[Numbered] = deque(maxlen=capacity)
        self._by_digest: dict[bytes, Numbered] = {}
        self._answers: OrderedDict[bytes, dict[bytes, Answer]] = OrderedDict()
        self._max_age_s = max_age_s
        self._own_capacity = own_capacity
        self._per_request = per_request
        self.last_seq = 0
        self.answers_dropped = 0

    # -- requests ---------------------------------------------------------------------------

    def delivered(self, request: Request, hops_left: int, now: float) -> Numbered:
        """Keep a delivered request; the oldest is forgotten when full."""
        self.expire(now)
        if len(self._requests) == self._requests.maxlen:
            self._by_digest.pop(self._requests[0].request.digest, None)
        self.last_seq += 1
        item = Numbered(self.last_seq, request, hops_left, now)
        self._requests.append(item)
        self._by_digest[request.digest] = item
        return item

    def after(self, seq: int, kind: str | None, now: float) -> tuple[list[Numbered], int]:
        """Requests numbered above `seq` (of `kind` if given), and how many were missed."""
        self.expire(now)
        found = [n for n in self._requests if n.seq > seq]
        first = found[0].seq if found else self.last_seq + 1
        missed = max(0, first - seq - 1) if seq < self.last_seq else 0
        if kind is not None:
            found = [n for n in found if n.request.body.kind == kind]
        return found, missed

    def find(self, digest: bytes, now: float) -> Request | None:
        """The still answerable request with this digest, or None."""
        self.expire(now)
        item = self._by_digest.get(digest)
        return None if item is None else item.request

    def expire(self, now: float) -> None:
        """Forget requests older than the broadcast's age limit."""
        horizon = now - self._max_age_s
        while self._requests and self._requests[0].received < horizon:
            old = self._requests.popleft()
            self._by_digest.pop(old.request.digest, None)

    # -- answers to our own requests --------------------------------------------------------

    def own_request(self, request_id: bytes) -> None:
        """Start collecting answers for one of our own requests."""
        self._answers[request_id] = {}
        self._answers.move_to_end(request_id)
        while len(self._answers) > self._own_capacity:
            self._answers.popitem(last=False)

    def answered(self, answer: Answer) -> bool:
        """Keep an answer (one per answerer, the latest); False if it was not kept."""
        kept = self._answers.get(answer.request_id)
        if kept is None or (answer.answerer not in kept and len(kept) >= self._per_request):
            self.answers_dropped += 1
            return False
        kept[answer.answerer] = answer
        return True

    def answers(self, request_id: bytes) -> list[Answer] | None:
        """The answers so far to our request `request_id`; None if it is not ours (or old)."""
        kept = self._answers.get(request_id)
        return None if kept is None else list(kept.values())

    def status(self) -> dict[str, object]:
        """Counters for the `broadcast` section."""
        return {
            "inbox_seq": self.last_seq,
            "inbox_held": len(self._requests),
            "own_requests": len(self._answers),
            "answers_dropped": self.answers_dropped,
        }
