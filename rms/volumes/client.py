"""The consumer's side of the volume protocol (sans-IO): claim, verify, renew, release.

The CFS holds one `ClientCore`. It makes each message (the caller sends it to the offer's
provider over TCP, one frame, and hands back the one-frame reply with `receive`) and keeps
the ids, so that a lost message is retried with the same ids: `claim_again`, and `renew` /
`release` called again, re-sign the same request, and the provider answers a repeat the way
it answered the first (docs/volumes.md, "Replays and retries").

A grant is accepted only if it is signed by the provider the claim went to, names this
node as its client, answers a pending claim, has the size claimed, has not expired, and its
box opens to secrets whose target name and nested addresses are the ones the volume id
implies. Anything else is `Rejected`, never raised.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address

from rms.identity import NodeIdentity
from rms.volumes.grants import GrantSecrets, open_secrets
from rms.volumes.terms import Offer, inner_addresses, names_volume
from rms.volumes.wire import MAX_MESSAGE, body_bytes, body_int, body_str, new_decoder
from rms.wire.decoder import Accepted
from rms.wire.envelope import Envelope, encode
from rms.wire.messages import volumes as msg
from rms.wire.registry import MessageType

__all__ = [
    "ClientCore",
    "ClientEvent",
    "ClientLease",
    "Granted",
    "PendingClaim",
    "Refused",
    "Rejected",
    "Released",
    "Renewed",
]


@dataclass(frozen=True, slots=True)
class PendingClaim:
    """A claim sent and not yet answered."""

    claim_id: bytes
    offer: Offer
    wg_key: bytes
    wg_port: int
    endpoints: tuple[IPv6Address, ...]


@dataclass(slots=True)
class ClientLease:
    """A granted volume as the client holds it."""

    volume_id: bytes
    offer: Offer
    claim_id: bytes
    size: int
    expires_ms: int  # the provider's clock
    secrets: GrantSecrets
    renewal_id: bytes | None = None  # an unanswered renewal, resent as is
    releasing: bool = False

    @property
    def provider(self) -> bytes:
        """The provider's ed25519 node key."""
        return self.offer.provider

    def renew_at_ms(self) -> int:
        """When to renew: halfway through the lease, so one lost renewal is survived."""
        return self.expires_ms - self.offer.terms.lease_s * 500


@dataclass(frozen=True, slots=True)
class Granted:
    """A claim was granted (also repeated for a repeated grant)."""

    lease: ClientLease


@dataclass(frozen=True, slots=True)
class Renewed:
    """A lease was extended to `expires_ms`."""

    volume_id: bytes
    expires_ms: int


@dataclass(frozen=True, slots=True)
class Released:
    """A lease ended at the client's request; the provider wipes the volume."""

    volume_id: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    """The provider refused a claim (`ref` = claim id) or a renew/release (`ref` = volume)."""

    ref: bytes
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A reply that was dropped: malformed, replayed, forged, or not for us."""

    reason: str


ClientEvent = Granted | Renewed | Released | Refused | Rejected


class ClientCore:
    """One consumer's claims and leases."""

    def __init__(self, identity: NodeIdentity, rng: random.Random) -> None:
        self.identity = identity
        self._rng = rng
        self._decoder = new_decoder()
        self._pending: dict[bytes, PendingClaim] = {}
        self._leases: dict[bytes, ClientLease] = {}

    @property
    def leases(self) -> Mapping[bytes, ClientLease]:
        """Granted leases by volume id."""
        return self._leases

    @property
    def pending(self) -> Mapping[bytes, PendingClaim]:
        """Claims not yet answered, by claim id."""
        return self._pending

    # -- making messages --------------------------------------------------------------------

    def claim(
        self,
        offer: Offer,
        wg_key: bytes,
        wg_port: int,
        endpoints: Sequence[IPv6Address],
        now: float,
    ) -> tuple[bytes, bytes]:
        """(claim id, signed claim) for `offer`; `wg_key` is our nested-VPN public key."""
        claim_id = self._rng.randbytes(msg.ID_SIZE)
        pending = PendingClaim(claim_id, offer, wg_key, wg_port, tuple(endpoints)[:4])
        self._pending[claim_id] = pending
        return claim_id, self.claim_again(claim_id, now)

    def claim_again(self, claim_id: bytes, now: float) -> bytes:
        """The same claim, signed afresh: for a retry after a lost message."""
        p = self._pending[claim_id]
        body = {
            "claim_id": claim_id,
            "offer_id": p.offer.terms.offer_id,
            "size": p.offer.terms.size,
            "wg_key": p.wg_key,
            "wg_port": p.wg_port,
            "endpoints": [a.packed for a in p.endpoints],
        }
        return self._encode(msg.CLAIM, body, now)

    def abandon(self, claim_id: bytes) -> None:
        """Give up a claim (the provider is unreachable); a late grant is then rejected."""
        self._pending.pop(claim_id, None)

    def renew(self, volume_id: bytes, now: float) -> bytes:
        """A signed renewal; until it is answered, calling again resends the same id."""
        lease = self._leases[volume_id]
        if lease.renewal_id is None:
            lease.renewal_id = self._rng.randbytes(msg.ID_SIZE)
        body = {"volume_id": volume_id, "renewal_id": lease.renewal_id}
        return self._encode(msg.RENEW, body, now)

    def release(self, volume_id: bytes, now: float) -> bytes:
        """A signed release; the lease is kept (and not renewed) until `released` comes."""
        self._leases[volume_id].releasing = True
        return self._encode(msg.RELEASE, {"volume_id": volume_id}, now)

    def due(self, now: float) -> list[bytes]:
        """Volumes whose renewal is due at `now`."""
        now_ms = int(now * 1000)
        return [
            v for v, lease in self._leases.items()
            if not lease.releasing and lease.renew_at_ms() <= now_ms
        ]  # fmt: skip

    def adopt(self, lease: ClientLease) -> None:
        """Hold a lease granted before a restart again (the CFS's saved leases)."""
        self._leases[lease.volume_id] = lease

    def forget(self, volume_id: bytes) -> None:
        """Drop a lease locally (expired, or its provider is gone for good)."""
        self._leases.pop(volume_id, None)

    # -- replies ----------------------------------------------------------------------------

    def receive(self, data: bytes, provider: bytes, now: float) -> ClientEvent:
        """Handle the reply of `provider` (the key we sent to); never raises on its bytes."""
        result = self._decoder.decode(data, now)
        if not isinstance(result, Accepted):
            return Rejected(result.reason.value)
        env = result.envelope
        if env.sender != provider:
            return Rejected("wrong_signer")
        if env.msg_type == msg.GRANT:
            return self._granted(env, now)
        handler = {
            msg.RENEWED.name: self._renewed,
            msg.RELEASED.name: self._released,
            msg.REFUSED.name: self._refused,
        }.get(env.msg_type.name)
        return Rejected("unexpected_type") if handler is None else handler(env)

    def _granted(self, env: Envelope, now: float) -> ClientEvent:
        claim_id = body_bytes(env, "claim_id")
        volume_id = body_bytes(env, "volume_id")
        known = self._leases.get(volume_id)
        if known is not None and known.claim_id == claim_id and known.provider == env.sender:
            return Granted(known)  # a repeated grant: the same lease
        pending = self._pending.get(claim_id)
        if pending is None or pending.offer.provider != env.sender:
            return Rejected("unsolicited")
        problem = _grant_problem(env, pending, self.identity.node_id, now)
        if problem is not None:
            return Rejected(problem)
        secrets = open_secrets(body_bytes(env, "box"), self.identity, env.sender)
        if secrets is None:
            return Rejected("bad_box")
        if not _consistent(secrets, volume_id):
            return Rejected("bad_grant")
        del self._pending[claim_id]
        size, expires_ms = body_int(env, "size"), body_int(env, "expires_ms")
        lease = ClientLease(volume_id, pending.offer, claim_id, size, expires_ms, secrets)
        self._leases[volume_id] = lease
        return Granted(lease)

    def _renewed(self, env: Envelope) -> ClientEvent:
        lease = self._leases.get(body_bytes(env, "volume_id"))
        if lease is None or lease.provider != env.sender:
            return Rejected("unsolicited")
        if lease.renewal_id != body_bytes(env, "renewal_id"):
            return Rejected("unsolicited")
        lease.expires_ms = body_int(env, "expires_ms")
        lease.renewal_id = None
        return Renewed(lease.volume_id, lease.expires_ms)

    def _released(self, env: Envelope) -> ClientEvent:
        volume_id = body_bytes(env, "volume_id")
        lease = self._leases.get(volume_id)
        if lease is None or lease.provider != env.sender or not lease.releasing:
            return Rejected("unsolicited")
        del self._leases[volume_id]
        return Released(volume_id)

    def _refused(self, env: Envelope) -> ClientEvent:
        ref = body_bytes(env, "ref")
        pending = self._pending.get(ref)
        lease = self._leases.get(ref)
        if pending is not None and pending.offer.provider == env.sender:
            del self._pending[ref]
        elif lease is not None and lease.provider == env.sender:
            lease.renewal_id = None
        else:
            return Rejected("unsolicited")
        return Refused(ref, body_str(env, "reason"), body_str(env, "detail"))

    def _encode(self, msg_type: MessageType, body: Mapping[str, object], now: float) -> bytes:
        nonce = self._rng.randbytes(16)
        return encode(self.identity, msg_type, body, now, nonce=nonce, max_datagram=MAX_MESSAGE)


def _grant_problem(env: Envelope, pending: PendingClaim, me: bytes, now: float) -> str | None:
    if body_bytes(env, "client") != me:
        return "not_for_us"
    if body_int(env, "size") != pending.offer.terms.size:
        return "size_mismatch"
    return "expired" if body_int(env, "expires_ms") <= int(now * 1000) else None


def _consistent(secrets: GrantSecrets, volume_id: bytes) -> bool:
    portal, client_address = inner_addresses(volume_id)
    names_match = names_volume(secrets.iqn, volume_id)  # BASE:<id>: the provider's target
    return names_match and secrets.portal == portal and secrets.client_address == client_address
