"""The provider's open offers (sans-IO): made once per request, found by id, forgotten at
expiry or, when `max_offers` are open, oldest first.

An offer is an invitation, not a reservation (docs/volumes.md, "Rules"): nothing here
holds capacity. The same request delivered twice gets the same offer, byte for byte.
"""

from __future__ import annotations

import random

from rms.volumes.leases import OfferRecord, ProviderSettings
from rms.volumes.terms import OfferTerms, StorageRequest
from rms.wire.messages.volumes import ID_SIZE

__all__ = ["OfferBook"]


class OfferBook:
    """Open offers by id, and by (requester, request id)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._offers: dict[bytes, OfferRecord] = {}  # insertion order = age
        self._by_request: dict[tuple[bytes, bytes], bytes] = {}

    def __len__(self) -> int:
        return len(self._offers)

    def get(self, offer_id: bytes) -> OfferRecord | None:
        """The open offer with this id, or None."""
        return self._offers.get(offer_id)

    def for_request(self, requester: bytes, request_id: bytes) -> OfferTerms | None:
        """The terms already offered for this request, or None."""
        offer_id = self._by_request.get((requester, request_id))
        if offer_id is None:
            return None
        return OfferTerms.unpack(self._offers[offer_id].terms)

    def make(
        self, s: ProviderSettings, request: StorageRequest, count: int, free: int, now_ms: int
    ) -> OfferTerms:
        """A new offer of `count` volumes of the requested size, remembered until expiry."""
        terms = OfferTerms(
            offer_id=self._rng.randbytes(ID_SIZE),
            size=request.size,
            count=count,
            location=s.location,
            network=s.network,
            port=s.port,
            capacity=s.capacity,
            free=free,
            lease_s=s.lease_s,
            expires_ms=now_ms + s.offer_ttl_s * 1000,
            price=s.price,
            reliability=s.reliability,
        )
        record = OfferRecord(
            terms.offer_id,
            request.requester,
            request.request_id,
            request.size,
            count,
            terms.expires_ms,
            terms.pack(),
        )
        while len(self._offers) >= s.max_offers:
            self._forget(next(iter(self._offers)))
        self._offers[terms.offer_id] = record
        self._by_request[request.requester, request.request_id] = terms.offer_id
        return terms

    def expire(self, now_ms: int) -> None:
        """Forget offers whose claim window has passed."""
        for offer_id in [o for o, r in self._offers.items() if r.expires_ms < now_ms]:
            self._forget(offer_id)

    def next_expiry_ms(self) -> int | None:
        """When the next offer expires."""
        return min((r.expires_ms + 1 for r in self._offers.values()), default=None)

    def _forget(self, offer_id: bytes) -> None:
        record = self._offers.pop(offer_id)
        self._by_request.pop((record.requester, record.request_id), None)
