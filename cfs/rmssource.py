"""The `VolumeSource` of a real node: the volume protocol (docs/volumes.md) via the local RMS.

- offers: `POST /v1/broadcast` a storage request (amount = volume size, terms =
  `RequestTerms`), wait `offer_wait_s`, then `GET /v1/broadcast/{id}/answers`: the RMS
  opened the boxed answers with the node key; each is `{"answerer": hex ed25519 key,
  "addresses": [IPv6 text], "terms": base64 OfferTerms, …}` (rms.gossip.exchange). A
  malformed answer is dropped and counted. A provider's public address comes from this
  node's own VPNs (the WireGuard endpoint of the member with that management address, in
  `GET /v1/status`).
- obtain / renew / release: one signed message in one frame over TCP to the provider's
  management address and offer port, one reply (`rms.volumes.ClientCore` makes and checks
  them). A lost message is retried `tries` times with the same ids, as the protocol allows.

The claim carries our nested-link WireGuard key (made here, one per lease) and port.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from ipaddress import IPv4Address, IPv6Address, IPv6Interface, ip_address, ip_interface
from typing import Any

import structlog

from cfs.grantrecord import RecordError, client_lease, grant_record
from cfs.initiator.driver import VolumeTarget
from cfs.lease import Lease, Tunnel, VolumeError, portal_of
from cfs.placement import Candidate, more_vpns
from rms.control.client import ControlClient, ControlError, DaemonUnavailable
from rms.identity import NodeIdentity
from rms.net.framing import FrameReader, encode_frame
from rms.volumes import (
    ClientCore,
    ClientLease,
    Granted,
    Offer,
    Refused,
    Released,
    Renewed,
    RequestTerms,
    pick_endpoint,
)
from rms.volumes.wire import MAX_MESSAGE
from rms.wg.keys import WgPrivateKey, WgPublicKey

Exchange = Callable[[IPv6Address, int, bytes, float], Awaitable[bytes]]
LUN = 1  # a provider exports each volume as LUN 1 of its own target
MAX_ANSWERS = 256
TOWARD = 32  # provider addresses a request for one VPN more may name (rms.vpn.want)
# Nested-link UDP ports of the CFS: 52000-52255, clear of the RMS's management (51820+) and
# guest (51900+) ports; the lab's providers use 52400 and up on the same nodes.
PORT_SPAN = 256
log = structlog.get_logger("cfs.volumes")


async def tcp_exchange(host: IPv6Address, port: int, data: bytes, timeout_s: float) -> bytes:
    """Send one frame, read one frame back; VolumeError on any failure or timeout."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(str(host), port)
            try:
                writer.write(encode_frame(data, MAX_MESSAGE))
                await writer.drain()
                frames = FrameReader(MAX_MESSAGE)
                while not (got := frames.feed(await reader.read(MAX_MESSAGE))):
                    if frames.error or reader.at_eof():
                        raise VolumeError(f"provider [{host}]:{port} sent no whole reply")
                return got[0]
            finally:
                writer.close()
    except (OSError, TimeoutError) as e:
        raise VolumeError(f"provider [{host}]:{port} unreachable: {e or 'timeout'}") from None


class RmsVolumeSource:
    """Offers through the RMS broadcast; leases straight from providers, signed by this node."""

    def __init__(
        self,
        identity: NodeIdentity,
        control: ControlClient,
        *,
        location: bytes,
        network: bytes,
        offer_wait_s: float = 5.0,
        port_base: int = 52000,
        exchange: Exchange = tcp_exchange,
        clock: Callable[[], float] = time.time,
        tries: int = 3,
        timeout_s: float = 5.0,
        rng: random.Random | None = None,
        distinct_blocks: bool = True,
    ) -> None:
        # The core draws claim ids and nonces from rng (ids, not secrets; tests seed it).
        self.core = ClientCore(identity, rng or random.Random())  # noqa: S311
        self.control, self.location, self.network = control, location, network
        self.offer_wait_s, self.port_base = offer_wait_s, port_base
        self.exchange, self.clock, self.tries, self.timeout_s = exchange, clock, tries, timeout_s
        self.distinct_blocks = distinct_blocks  # False: placement ignores public /24s
        self._offers: dict[str, Offer] = {}
        self._answered: dict[str, tuple[IPv6Address, ...]] = {}  # provider -> its addresses
        self._own_id = identity.node_id_hex
        self._ports: set[int] = set()
        self.dropped = 0
        self.unreachable = 0

    async def offers(self, size: int) -> list[Candidate]:
        """Broadcast a request for one volume of `size` and collect the offers."""
        terms = RequestTerms(1, self.location, self.network).pack()
        body = {"kind": "storage", "amount": size, "terms": base64.b64encode(terms).decode()}
        try:
            sent = await self.control.post_json("/v1/broadcast", body)
            await asyncio.sleep(self.offer_wait_s)
            answers = await self.control.get_json(f"/v1/broadcast/{sent['request_id']}/answers")
            status = await self.control.status()
        except (ControlError, DaemonUnavailable, KeyError) as e:
            raise VolumeError(f"asking the cloud for volumes failed: {e}") from None
        public = public_addresses(status) if self.distinct_blocks else {}
        mine = own_addresses(status)
        found: list[Candidate] = []
        answered: dict[str, tuple[IPv6Address, ...]] = {}
        for raw in list(answers.get("answers", []))[:MAX_ANSWERS]:
            offer = parse_answer(raw)
            if offer is None or offer.terms.size < size:
                self.dropped += 1
                continue
            answered[offer.provider_id.hex()] = offer.addresses
            if pick_endpoint(mine, offer.addresses) is None:
                # Claims go over a management VPN both are in (docs/volumes.md); a provider
                # that shares none with this node is out of reach, however good its offer.
                self.unreachable += 1
            else:
                found.append(self._candidate(offer, public))
        self._answered = answered
        log.info(
            "cfs.offers", size=size, offers=len(found), dropped=self.dropped,
            unreachable=self.unreachable,
        )  # fmt: skip
        await self._widen(status)
        return found

    async def check_reach(self) -> None:
        """Ask for one more management VPN if the providers that last answered are still
        out of reach in too great a number (after a join, with this node's VPNs as now)."""
        if not self._answered:
            return
        try:
            status = await self.control.status()
        except (ControlError, DaemonUnavailable) as e:
            log.info("cfs.reach_unknown", reason=str(e))
            return
        await self._widen(status)

    async def _widen(self, status: dict[str, Any]) -> None:
        mine = own_addresses(status)
        others = [a for p, a in self._answered.items() if p != self._own_id]
        beyond = [a for a in others if pick_endpoint(mine, a) is None]
        reachable = len(others) - len(beyond)
        wanted = _dict(_dict(status.get("vpn_joins")).get("wanted"))
        count, most = _int(wanted.get("count")), _int(wanted.get("max"))
        ask = more_vpns(reachable, len(beyond), len(mine), count, most)
        if ask is None:
            return
        log.info("cfs.more_vpns", reachable=reachable, answered=len(others), vpns=ask)
        # the RMS tries first the VPNs these providers are in: joining one reaches them
        toward = [str(a) for addresses in beyond for a in addresses][:TOWARD]
        try:
            await self.control.post_json("/v1/vpns/want", {"vpns": ask, "toward": toward})
        except (ControlError, DaemonUnavailable) as e:
            log.warning("cfs.more_vpns_refused", vpns=ask, reason=str(e))

    def _candidate(
        self, offer: Offer, public: dict[IPv6Address, IPv4Address | IPv6Address]
    ) -> Candidate:
        key = offer.terms.offer_id.hex()
        self._offers[key] = offer
        address = next((public[a] for a in offer.addresses if a in public), None)
        return Candidate(
            provider=offer.provider_id.hex(),
            location=offer.terms.location.hex(),
            network=offer.terms.network.hex(),
            address=address,
            reliability=offer.terms.reliability / 1000,  # self-reported until audits land
            offer=key,
        )

    async def obtain(self, candidate: Candidate, size: int) -> Lease:
        """Claim the offer behind candidate; the lease its provider grants."""
        offer = self._offers.get(candidate.offer)
        if offer is None:
            raise VolumeError(f"no offer {candidate.offer!r} is known (offers are per request)")
        key, port = WgPrivateKey.generate(), self._port()
        mine = await self._own_addresses()
        shared = pick_endpoint(mine, offer.addresses)
        endpoints = ([shared[0]] if shared else []) + [
            a for a in mine if not shared or a != shared[0]
        ]
        claim_id, data = self.core.claim(offer, key.public_key().raw, port, endpoints, self.clock())
        try:
            event = await self._ask(
                offer, data, lambda: self.core.claim_again(claim_id, self.clock())
            )
        except VolumeError:
            self.core.abandon(claim_id)
            self._ports.discard(port)
            raise
        if not isinstance(event, Granted):
            self._ports.discard(port)
            raise VolumeError(f"claim refused by {candidate.provider[:16]}: {_why(event)}")
        return to_lease(event.lease, candidate, key, port)

    async def renew(self, lease: Lease) -> Lease:
        """Extend the lease with its provider."""
        volume_id, offer = self._held(lease)
        data = self.core.renew(volume_id, self.clock())
        event = await self._ask(offer, data, lambda: self.core.renew(volume_id, self.clock()))
        if not isinstance(event, Renewed):
            raise VolumeError(f"renewal of {lease.lease_id} refused: {_why(event)}")
        return lease.renewed(event.expires_ms / 1000)

    async def release(self, lease: Lease) -> None:
        """Give the volume back; its provider wipes it."""
        volume_id, offer = self._held(lease)
        data = self.core.release(volume_id, self.clock())
        event = await self._ask(offer, data, lambda: self.core.release(volume_id, self.clock()))
        if not isinstance(event, Released):
            raise VolumeError(f"release of {lease.lease_id} refused: {_why(event)}")
        self._ports.discard(lease.tunnel.listen_port)

    def record(self, lease: Lease) -> dict[str, Any]:
        """The protocol's part of a saved lease (cfs/grantrecord.py); VolumeError if the
        lease is not (or no longer) held."""
        volume_id, _ = self._held(lease)
        return grant_record(self.core.leases[volume_id])

    def adopt(self, lease: Lease, record: dict[str, Any]) -> None:
        """Hold a saved lease again, to renew and release it; VolumeError if it is forged."""
        try:
            self.core.adopt(client_lease(record, lease))
        except RecordError as e:
            raise VolumeError(str(e)) from None
        self._ports.add(lease.tunnel.listen_port)

    def _held(self, lease: Lease) -> tuple[bytes, Offer]:
        volume_id = bytes.fromhex(lease.lease_id)
        held = self.core.leases.get(volume_id)
        if held is None:
            raise VolumeError(f"lease {lease.lease_id} is not held by this CFS")
        return volume_id, held.offer

    async def _ask(self, offer: Offer, data: bytes, again: Callable[[], bytes]) -> object:
        last = ""
        for attempt in range(self.tries):
            for host in offer.addresses:
                try:
                    reply = await self.exchange(host, offer.terms.port, data, self.timeout_s)
                except VolumeError as e:
                    last = str(e)
                    continue
                return self.core.receive(reply, offer.provider, self.clock())
            data = again() if attempt + 1 < self.tries else data
        raise VolumeError(f"no answer after {self.tries} tries: {last}")

    def _port(self) -> int:
        span = range(self.port_base, self.port_base + PORT_SPAN)
        port = next((p for p in span if p not in self._ports), None)
        if port is None:
            raise VolumeError(f"all {PORT_SPAN} nested-link ports from {self.port_base} are in use")
        self._ports.add(port)
        return port

    async def _own_addresses(self) -> list[IPv6Address]:
        try:
            status = await self.control.status()
        except (ControlError, DaemonUnavailable) as e:
            raise VolumeError(f"the local RMS did not answer: {e}") from None
        return own_addresses(status)


def parse_answer(raw: object) -> Offer | None:
    """An opened answer as an Offer; None when anything in it is malformed."""
    if not isinstance(raw, dict):
        return None
    provider, addresses, terms = raw.get("answerer"), raw.get("addresses"), raw.get("terms")
    if not (isinstance(provider, str) and isinstance(terms, str) and isinstance(addresses, list)):
        return None
    if (
        len(provider) != 64
        or len(terms) > 2 * 1024
        or not all(isinstance(a, str) for a in addresses)
    ):
        return None
    try:
        packed = base64.b64decode(terms, validate=True)
        return Offer.from_answer(bytes.fromhex(provider), addresses, packed)
    except (ValueError, binascii.Error):
        return None


def to_lease(granted: ClientLease, candidate: Candidate, key: WgPrivateKey, port: int) -> Lease:
    """The lease the CFS works with, from a verified grant."""
    s = granted.secrets
    target = VolumeTarget(
        portal_of(s.portal, s.portal_port), s.iqn, LUN, s.chap_user, s.chap_secret
    )
    tunnel = Tunnel(
        private_key=key,
        address=IPv6Interface(f"{s.client_address}/{s.prefix_len}"),
        peer_key=WgPublicKey(s.wg_key),
        peer_endpoint=f"[{s.endpoint}]:{s.endpoint_port}",
        peer_address=s.portal,
        psk=s.wg_psk,
        listen_port=port,
    )
    return Lease(
        granted.volume_id.hex(), candidate, granted.size, granted.expires_ms / 1000, target, tunnel
    )


def own_addresses(status: dict[str, Any]) -> list[IPv6Address]:
    """This node's management addresses, one per VPN, from its status."""
    found = []
    for vpn in _list(status.get("vpns")):
        address = _ip(vpn.get("address")) if isinstance(vpn, dict) else None
        if isinstance(address, IPv6Address):
            found.append(address)
    return found[:4]


def public_addresses(status: dict[str, Any]) -> dict[IPv6Address, IPv4Address | IPv6Address]:
    """Management address → public address of every member of this node's VPNs."""
    found: dict[IPv6Address, IPv4Address | IPv6Address] = {}
    for vpn in _list(status.get("vpns")):
        for peer in _list(vpn.get("peers") if isinstance(vpn, dict) else None):
            if not isinstance(peer, dict):
                continue
            inner, endpoint = _ip(peer.get("address")), _endpoint_host(peer.get("endpoint"))
            if isinstance(inner, IPv6Address) and endpoint is not None:
                found[inner] = endpoint
    return found


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int | None:
    return value if type(value) is int else None


def _list(value: object) -> Sequence[object]:
    return value if isinstance(value, list) else []


def _ip(value: object) -> IPv4Address | IPv6Address | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return ip_interface(value).ip
    except ValueError:
        return None


def _endpoint_host(value: object) -> IPv4Address | IPv6Address | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    host = value.rpartition(":")[0].strip("[]")
    try:
        return ip_address(host)
    except ValueError:
        return None


def _why(event: object) -> str:
    if isinstance(event, Refused):
        return f"{event.reason} {event.detail}".strip()
    return str(getattr(event, "reason", type(event).__name__))
