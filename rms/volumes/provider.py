"""The provider's side of the volume protocol (sans-IO): offers, claims, leases, expiry.

docs/volumes.md is the protocol. The core decides; its adapter (volume_provider.service)
performs the `Export` and `Unexport` actions it returns and sends its replies. Rules kept
here, each tested in tests/unit/test_volumes_protocol.py and test_volumes_adversarial.py:

- Every step is idempotent under its ids: a claim repeated with the same claim id gets the
  same grant (same volume, same sealed secrets); a renewal repeated with the same renewal id
  gets the same expiry; a repeated release is answered `released` again.
- A volume belongs to one client key from grant to wipe: only the key an offer was made to
  may claim it, and only the lease's client may renew or release it.
- Capacity is checked when a volume is granted: offers are invitations, not reservations, so
  an unclaimed offer never blocks space; a claim that no longer fits is refused.
- Replays and stale copies are refused by the wire decoder (replay cache, time window).

Time is wall-clock seconds (`now`), as for the wire decoder; peer input never raises.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv6Address

from rms.identity import NodeIdentity
from rms.volumes.leases import (
    Action,
    Export,
    Lease,
    LeaseRequest,
    OfferRecord,
    ProviderSettings,
    Reason,
    Unexport,
    build_lease,
)
from rms.volumes.offers import OfferBook
from rms.volumes.terms import OfferTerms, StorageRequest, pick_endpoint
from rms.volumes.wire import MAX_MESSAGE, body_bytes, body_int, new_decoder
from rms.wire.decoder import Accepted
from rms.wire.envelope import Envelope, encode
from rms.wire.messages import volumes as msg
from rms.wire.registry import MessageType

__all__ = ["Outcome", "ProviderCore"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with one message: the reply to send (if any) and actions to perform first."""

    reply: bytes | None
    actions: tuple[Action, ...] = ()
    event: str = ""  # "granted", "refused:<reason>", "dropped:<reason>" … for logs


class ProviderCore:
    """One provider's offers and leases."""

    def __init__(
        self, identity: NodeIdentity, settings: ProviderSettings, rng: random.Random
    ) -> None:
        self.identity = identity
        self.settings = settings
        self._rng = rng
        self._decoder = new_decoder()
        self._offers = OfferBook(rng)
        self._leases: dict[bytes, Lease] = {}
        self._claims: dict[tuple[bytes, bytes], bytes] = {}  # (client, claim id) -> volume id
        self._tombstones: dict[bytes, tuple[bytes, int, bytes]] = {}  # (client, until, claim)
        self.counts: Counter[str] = Counter()

    # -- capacity ---------------------------------------------------------------------------

    @property
    def leases(self) -> Mapping[bytes, Lease]:
        """Current leases by volume id."""
        return self._leases

    @property
    def used(self) -> int:
        """Bytes leased."""
        return sum(lease.size for lease in self._leases.values())

    @property
    def free(self) -> int:
        """Bytes neither leased nor pending a wipe."""
        return max(0, self.settings.capacity - self.used)

    def _free_ports(self) -> list[int]:
        taken = {lease.wg_port for lease in self._leases.values()}
        first = self.settings.wg_port_first
        ports = range(first, first + self.settings.wg_port_count)
        return [p for p in ports if p not in taken]

    # -- offers -----------------------------------------------------------------------------

    def consider(self, request: StorageRequest, now: float) -> OfferTerms | Reason:
        """The offer to answer a storage request with, or why this provider will not."""
        now_ms = int(now * 1000)
        self._offers.expire(now_ms)
        known = self._offers.for_request(request.requester, request.request_id)
        if known is not None:  # the RMS delivered it twice: the same offer again
            return known
        reason = self._refusal_for(request)
        if reason is not None:
            self.counts[f"refused_request:{reason}"] += 1
            return reason
        count = min(
            request.terms.count,
            self.settings.max_per_request,
            self.free // request.size,
            len(self._free_ports()),
        )
        self.counts["offers"] += 1
        return self._offers.make(self.settings, request, count, self.free, now_ms)

    def _refusal_for(self, request: StorageRequest) -> Reason | None:
        s = self.settings
        if request.requester == self.identity.public_key:
            return Reason.OWN_REQUEST
        if s.location in request.exclude_locations or s.network in request.exclude_networks:
            return Reason.EXCLUDED
        if not s.min_size <= request.size <= s.capacity:
            return Reason.BAD_SIZE
        if request.size > self.free:
            return Reason.OVER_CAPACITY
        return None if self._free_ports() else Reason.NO_SLOTS

    # -- point-to-point messages ------------------------------------------------------------

    def handle(self, data: bytes, now: float) -> Outcome:
        """Handle one framed message from a client; never raises on peer input."""
        result = self._decoder.decode(data, now)
        if not isinstance(result, Accepted):
            return self._dropped(result.reason.value)
        env = result.envelope
        now_ms = int(now * 1000)
        if env.msg_type == msg.CLAIM:
            return self._claim(env, now, now_ms)
        if env.msg_type == msg.RENEW:
            return self._renew(env, now, now_ms)
        if env.msg_type == msg.RELEASE:
            return self._release(env, now)
        return self._dropped("unexpected_type")

    def _claim(self, env: Envelope, now: float, now_ms: int) -> Outcome:
        claim_id = body_bytes(env, "claim_id")
        offer_id = body_bytes(env, "offer_id")
        known = self._claims.get((env.sender, claim_id))
        if known is not None:
            return self._repeated_claim(known, offer_id, claim_id, now)
        reason = self._claim_refusal(env, offer_id, now_ms)
        if reason is not None:
            return self._refuse(claim_id, reason, now)
        ports = self._free_ports()
        if not ports:
            return self._refuse(claim_id, Reason.NO_SLOTS, now)
        lease = self._new_lease(env, claim_id, offer_id, ports[0], now_ms)
        if lease is None:
            return self._refuse(claim_id, Reason.BAD_TERMS, now, "no client endpoint")
        self._offer(offer_id).claims.append(claim_id)
        self._leases[lease.volume_id] = lease
        self._claims[env.sender, claim_id] = lease.volume_id
        self.counts["granted"] += 1
        return Outcome(self._grant(lease, now), (Export(lease),), "granted")

    def _repeated_claim(
        self, volume_id: bytes, offer_id: bytes, claim_id: bytes, now: float
    ) -> Outcome:
        lease = self._leases.get(volume_id)
        if lease is None:
            return self._refuse(claim_id, Reason.LEASE_EXPIRED, now)
        if lease.offer_id != offer_id:
            return self._refuse(claim_id, Reason.CLAIM_CONFLICT, now)
        self.counts["granted_again"] += 1
        return Outcome(self._grant(lease, now), (), "granted_again")

    def _claim_refusal(self, env: Envelope, offer_id: bytes, now_ms: int) -> Reason | None:
        offer = self._offers.get(offer_id)
        if offer is None:
            return Reason.UNKNOWN_OFFER
        if offer.requester != env.sender:
            return Reason.NOT_YOUR_OFFER
        if now_ms > offer.expires_ms:
            return Reason.OFFER_EXPIRED
        if body_int(env, "size") != offer.size:
            return Reason.SIZE_MISMATCH
        if len(offer.claims) >= offer.count:
            return Reason.OFFER_TAKEN
        return Reason.OVER_CAPACITY if offer.size > self.free else None

    def _new_lease(
        self, env: Envelope, claim_id: bytes, offer_id: bytes, wg_port: int, now_ms: int
    ) -> Lease | None:
        theirs = [IPv6Address(a) for a in _byte_list(env.body.get("endpoints"))]
        if not theirs or not self.settings.addresses:
            return None
        pair = pick_endpoint(self.settings.addresses, theirs)
        own, their = pair or (self.settings.addresses[0], theirs[0])
        return build_lease(
            self.identity,
            self._rng,
            LeaseRequest(
                client=env.sender,
                claim_id=claim_id,
                offer_id=offer_id,
                size=self._offer(offer_id).size,
                wg_port=wg_port,
                client_wg_key=body_bytes(env, "wg_key"),
                client_wg_port=body_int(env, "wg_port"),
                own_endpoint=own,
                client_endpoint=their,
                expires_ms=now_ms + self.settings.lease_s * 1000,
                iqn_base=self.settings.iqn_base,
                chap_secret_len=self.settings.chap_secret_len,
            ),
        )

    def _grant(self, lease: Lease, now: float) -> bytes:
        body = {
            "claim_id": lease.claim_id,
            "volume_id": lease.volume_id,
            "client": lease.client_id,
            "size": lease.size,
            "expires_ms": lease.expires_ms,
            "box": lease.box,
        }
        return self._encode(msg.GRANT, body, now)

    def _renew(self, env: Envelope, now: float, now_ms: int) -> Outcome:
        volume_id = body_bytes(env, "volume_id")
        renewal_id = body_bytes(env, "renewal_id")
        lease = self._leases.get(volume_id)
        reason = self._lease_refusal(lease, volume_id, env.sender)
        if reason is not None or lease is None:
            return self._refuse(volume_id, reason or Reason.UNKNOWN_VOLUME, now)
        if lease.renewal is None or lease.renewal[0] != renewal_id:
            if now_ms >= lease.expires_ms:
                return self._refuse(volume_id, Reason.LEASE_EXPIRED, now)
            lease.expires_ms = now_ms + self.settings.lease_s * 1000
            lease.renewal = (renewal_id, lease.expires_ms)
            self.counts["renewed"] += 1
        body = {"volume_id": volume_id, "renewal_id": renewal_id, "expires_ms": lease.renewal[1]}
        return Outcome(self._encode(msg.RENEWED, body, now), (), "renewed")

    def _lease_refusal(self, lease: Lease | None, volume_id: bytes, sender: bytes) -> Reason | None:
        if lease is not None:
            return None if lease.client == sender else Reason.NOT_YOUR_LEASE
        tomb = self._tombstones.get(volume_id)
        if tomb is None:
            return Reason.UNKNOWN_VOLUME
        return Reason.LEASE_EXPIRED if tomb[0] == sender else Reason.NOT_YOUR_LEASE

    def _release(self, env: Envelope, now: float) -> Outcome:
        volume_id = body_bytes(env, "volume_id")
        lease = self._leases.get(volume_id)
        reason = self._lease_refusal(lease, volume_id, env.sender)
        if reason is Reason.LEASE_EXPIRED:  # released (or expired) already: the same answer
            return Outcome(self._released(volume_id, now), (), "released_again")
        if reason is not None or lease is None:
            return self._refuse(volume_id, reason or Reason.UNKNOWN_VOLUME, now)
        action = self._end(lease, "released", int(now * 1000))
        self.counts["released"] += 1
        return Outcome(self._released(volume_id, now), (action,), "released")

    def _released(self, volume_id: bytes, now: float) -> bytes:
        return self._encode(msg.RELEASED, {"volume_id": volume_id}, now)

    # -- the adapter's reports, time and status ---------------------------------------------

    def restore(self, leases: Iterable[Lease], now: float) -> list[Lease]:
        """Take back leases saved before a restart: those unexpired, in the port range and
        not clashing; the ones kept, to export again. The capacity is not checked: it may
        not be known yet (it can follow the RMS), and a granted lease is never cut short."""
        now_ms = int(now * 1000)
        kept: list[Lease] = []
        for lease in sorted(leases, key=lambda x: x.expires_ms, reverse=True):
            if lease.expires_ms > now_ms and self._fits(lease):
                self._leases[lease.volume_id] = lease
                self._claims[lease.client, lease.claim_id] = lease.volume_id
                lease.exported = False
                kept.append(lease)
        self.counts["restored"] += len(kept)
        return kept

    def _fits(self, lease: Lease) -> bool:
        return lease.volume_id not in self._leases and lease.wg_port in self._free_ports()

    def set_addresses(self, addresses: tuple[IPv6Address, ...]) -> None:
        """The node's management addresses changed (a VPN joined or left)."""
        self.settings = replace(self.settings, addresses=addresses)

    def set_capacity(self, capacity: int) -> None:
        """The owner changed what the node contributes; leases already granted stay."""
        self.settings = replace(self.settings, capacity=max(0, capacity))

    def end(self, volume_id: bytes, why: str, now: float) -> Unexport | None:
        """End a lease now (the provider stops); the Unexport to perform, or None."""
        lease = self._leases.get(volume_id)
        return None if lease is None else self._end(lease, why, int(now * 1000))

    def export_done(self, volume_id: bytes) -> None:
        """The adapter exported the volume."""
        lease = self._leases.get(volume_id)
        if lease is not None:
            lease.exported = True

    def export_failed(self, volume_id: bytes, now: float) -> Outcome:
        """The adapter could not export: free the lease, clean up, refuse the claim."""
        lease = self._leases.get(volume_id)
        if lease is None:
            return Outcome(None)
        action = self._end(lease, "export_failed", int(now * 1000))
        self._claims.pop((lease.client, lease.claim_id), None)
        offer = self._offers.get(lease.offer_id)
        if offer is not None and lease.claim_id in offer.claims:
            offer.claims.remove(lease.claim_id)
        refusal = self._refuse(lease.claim_id, Reason.EXPORT_FAILED, now)
        return Outcome(refusal.reply, (action,), refusal.event)

    def handle_timer(self, now: float) -> list[Unexport]:
        """End expired leases (tear down and wipe), forget old offers and tombstones."""
        now_ms = int(now * 1000)
        self._offers.expire(now_ms)
        for volume_id in [v for v, t in self._tombstones.items() if t[1] <= now_ms]:
            client, _, claim_id = self._tombstones.pop(volume_id)
            self._claims.pop((client, claim_id), None)  # a claim that old is stale anyway
        expired = [lease for lease in self._leases.values() if lease.expires_ms <= now_ms]
        self.counts["expired"] += len(expired)
        return [self._end(lease, "expired", now_ms) for lease in expired]

    def next_timer(self) -> float | None:
        """When `handle_timer` should next run (wall-clock seconds), or None."""
        times = [lease.expires_ms for lease in self._leases.values()]
        offers = self._offers.next_expiry_ms()
        times += [] if offers is None else [offers]
        times += [until for _, until, _ in self._tombstones.values()]
        return min(times) / 1000 if times else None

    def status(self, now: float) -> dict[str, object]:
        """The `volumes` status section: capacity, leases and counters; no secrets."""
        now_ms = int(now * 1000)
        return {
            "capacity": self.settings.capacity,
            "used": self.used,
            "free": self.free,
            "volumes": [lease.status(now_ms) for lease in self._leases.values()],
            "open_offers": len(self._offers),
            "counts": dict(sorted(self.counts.items())),
            "rejected": {r.value: n for r, n in sorted(self._decoder.rejected.items())},
        }

    # -- helpers ----------------------------------------------------------------------------

    def _offer(self, offer_id: bytes) -> OfferRecord:
        offer = self._offers.get(offer_id)
        if offer is None:  # callers checked it is open: our bug
            raise KeyError("offer gone")
        return offer

    def _end(self, lease: Lease, why: str, now_ms: int) -> Unexport:
        del self._leases[lease.volume_id]
        until = now_ms + self.settings.tombstone_s * 1000
        self._tombstones[lease.volume_id] = (lease.client, until, lease.claim_id)
        return Unexport(lease.volume_id, lease.secrets.iqn, lease.wg_port, why)

    def _refuse(self, ref: bytes, reason: Reason, now: float, detail: str = "") -> Outcome:
        self.counts[f"refused:{reason}"] += 1
        body = {"ref": ref, "reason": reason.value, "detail": detail[:200]}
        return Outcome(self._encode(msg.REFUSED, body, now), (), f"refused:{reason}")

    def _dropped(self, reason: str) -> Outcome:
        self.counts[f"dropped:{reason}"] += 1
        return Outcome(None, (), f"dropped:{reason}")

    def _encode(self, msg_type: MessageType, body: Mapping[str, object], now: float) -> bytes:
        nonce = self._rng.randbytes(16)
        return encode(self.identity, msg_type, body, now, nonce=nonce, max_datagram=MAX_MESSAGE)


def _byte_list(value: object) -> list[bytes]:
    if not isinstance(value, tuple | list):
        return []
    return [v for v in value if type(v) is bytes and len(v) == 16]
