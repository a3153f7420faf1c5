"""Cross-VPN relaying (docs/dht.md, "Cloud-wide reach").

A node can only send to members of the management VPNs it is in. To ask a node it shares no
VPN with, it sends `dht.relay` to a contact that can reach it (or to the first of a short
chain of such contacts). Each relay forwards the origin's request, boxed to the target
(NaCl box, X25519 keys derived from the ed25519 keys), and carries the target's boxed,
signed reply back untouched: a relay can neither read nor forge either. Relays only serve
origins whose address they proved, are rate-limited per origin, keep a bounded table of
forwards, and never extend a path (the origin fixes it, at most `max_relays` long).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from nacl.exceptions import CryptoError
from nacl.public import Box

from rms.dht.rpc import RateLimiter
from rms.dht.types import SockAddr
from rms.identity import NodeIdentity, peer_box_public_key

__all__ = ["Boxes", "Forward", "Forwards"]


class Boxes:
    """NaCl boxes to peers, cached: deriving a shared key costs an X25519 operation."""

    def __init__(self, identity: NodeIdentity, capacity: int = 256) -> None:
        self._private = identity.box_private_key()
        self._boxes: OrderedDict[bytes, Box] = OrderedDict()
        self.capacity = capacity

    def _box(self, peer: bytes) -> Box | None:
        box = self._boxes.pop(peer, None)
        if box is None:
            try:
                box = Box(self._private, peer_box_public_key(peer))
            except (CryptoError, ValueError, TypeError):  # not a valid curve point
                return None
        self._boxes[peer] = box
        if len(self._boxes) > self.capacity:
            self._boxes.popitem(last=False)
        return box

    def seal(self, peer: bytes, data: bytes) -> bytes | None:
        """`data` encrypted and authenticated for `peer`'s key."""
        box = self._box(peer)
        return None if box is None else bytes(box.encrypt(data))

    def open(self, peer: bytes, data: bytes) -> bytes | None:
        """The plaintext of a box from `peer`, or None if it does not open."""
        box = self._box(peer)
        if box is None:
            return None
        try:
            return bytes(box.decrypt(data))
        except (CryptoError, ValueError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class Forward:
    """A request we relayed: where its answer must come from and go back to."""

    back_addr: SockAddr
    back_rid: bytes
    next_key: bytes
    next_addr: SockAddr
    deadline: float


class Forwards:
    """The relayed requests awaiting an answer, bounded and rate-limited per origin."""

    def __init__(self, rate: float, capacity: int, timeout_s: float) -> None:
        self.limiter = RateLimiter(rate, max(1.0, rate * 2))
        self.capacity = capacity
        self.timeout_s = timeout_s
        self._table: OrderedDict[bytes, Forward] = OrderedDict()
        self.relayed = 0

    def admit(self, origin: bytes, now: float) -> bool:
        """Whether we relay one more request for `origin` now."""
        self.expire(now)
        return len(self._table) < self.capacity and self.limiter.allow(origin, now)

    def remember(self, rid: bytes, forward: Forward) -> None:
        """Wait for the answer to the request we forwarded with `rid`."""
        self._table[rid] = forward
        self.relayed += 1

    def answer(self, rid: bytes, sender: bytes, addr: SockAddr) -> Forward | None:
        """The forward this answer belongs to, if it comes from the hop we asked."""
        forward = self._table.get(rid)
        if forward is None or forward.next_key != sender or forward.next_addr != addr:
            return None
        del self._table[rid]
        return forward

    def expire(self, now: float) -> None:
        """Forget forwards whose answer is overdue (the origin times out by itself)."""
        while self._table:
            rid, forward = next(iter(self._table.items()))
            if forward.deadline > now:
                return
            del self._table[rid]

    def __len__(self) -> int:
        return len(self._table)
