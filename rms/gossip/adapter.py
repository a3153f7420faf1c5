"""The asyncio adapter of the gossip core: one UDP socket, one timer, nothing decided here.

Why UDP: a request is at most `policy.gossip_max_request_bytes` (one datagram), WireGuard
already authenticates and encrypts every hop, the full mesh's redundancy replaces
retransmission, and a node keeps no connection to each of its ~14 neighbours. The sender of
a datagram is known by its management address: member addresses derive from node ids
(rms.overlay), so the adapter maps a source address back to the neighbour's key and VPN, and
drops datagrams from any other address.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from ipaddress import ip_address
from typing import Any, cast

import structlog

from rms.gossip.core import Gossip
from rms.gossip.events import AnswerReceived, Delivered, Dropped, Output, Send
from rms.gossip.requests import Request
from rms.identity import node_id_of
from rms.overlay import member_address
from rms.wire.messages.gossip import RequestBody

__all__ = ["GOSSIP_PORT", "AddressOf", "GossipService", "member_endpoint"]

GOSSIP_PORT = 7948  # on every member's management address, next to roster RPC on 7947

AddressOf = Callable[[uuid.UUID, bytes], tuple[str, int]]
Event = Delivered | AnswerReceived

log = structlog.get_logger("rms.gossip")


def member_endpoint(vpn_id: uuid.UUID, key: bytes) -> tuple[str, int]:
    """Where a member of `vpn_id` with node key `key` listens for gossip."""
    return str(member_address(vpn_id, node_id_of(key)).ip), GOSSIP_PORT


class GossipService(asyncio.DatagramProtocol):
    """Runs a `Gossip` core on a UDP socket; events go to `on_event`."""

    def __init__(
        self,
        core: Gossip,
        on_event: Callable[[Event], None],
        *,
        address_of: AddressOf = member_endpoint,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.core = core
        self._on_event = on_event
        self._address_of = address_of
        self._clock = clock  # wall clock: origin times are compared across machines
        self._peers: dict[tuple[str, int], tuple[bytes, uuid.UUID]] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.ready = asyncio.Event()  # set once the socket is bound
        self.unknown_sources = 0
        self.send_errors: Counter[str] = Counter()

    async def run(self, host: str = "::", port: int = GOSSIP_PORT) -> None:
        """Serve until cancelled; the socket and timer are closed on the way out."""
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        try:
            await asyncio.Event().wait()
        finally:
            self.close()

    def close(self) -> None:
        """Close the socket and cancel the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def set_neighbours(self, vpn_id: uuid.UUID, keys: Iterable[bytes]) -> None:
        """Feed the members of one VPN (from its roster) to the core and the address map."""
        members = list(keys)
        self._peers = {a: p for a, p in self._peers.items() if p[1] != vpn_id}
        for key in members:
            host, port = self._address_of(vpn_id, key)
            self._peers[_normal(host), port] = (key, vpn_id)
        self.core.set_neighbours(vpn_id, members)

    def broadcast(self, body: RequestBody) -> None:
        """Broadcast one resource request of this node."""
        self._apply(self.core.broadcast(body, self._clock()))

    def answer(self, request: Request, offer: Mapping[str, object]) -> None:
        """Answer a delivered request with a boxed offer."""
        self._apply(self.core.answer(request, offer, self._clock()))

    # asyncio.DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport and arm the timer."""
        # A datagram endpoint's transport; 3.11's selector transport does not subclass it.
        self._transport = cast(asyncio.DatagramTransport, transport)
        self.ready.set()
        self._rearm()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        """Hand one datagram to the core, if it comes from a known neighbour address."""
        # Peers send from the gossip port they listen on, so (address, port) names them.
        peer = self._peers.get((_normal(str(addr[0])), addr[1]))
        if peer is None:
            self.unknown_sources += 1
            return
        self._apply(self.core.datagram_received(data, peer[0], peer[1], self._clock()))

    def error_received(self, exc: Exception) -> None:
        """An ICMP error for an earlier send: counted, the loop goes on."""
        self.send_errors[type(exc).__name__] += 1

    # outputs and time

    def _apply(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self._send(out)
            elif isinstance(out, Dropped):
                log.debug("gossip.dropped", reason=out.reason)
            else:
                self._on_event(out)
        self._rearm()

    def _send(self, out: Send) -> None:
        if self._transport is None:
            return
        try:
            self._transport.sendto(out.data, self._address_of(out.vpn_id, out.to_peer))
        except OSError as exc:  # a route gone with a VPN: one lost datagram, counted
            self.send_errors[type(exc).__name__] += 1

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.core.next_timer()
        if when is None or self._transport is None:
            return
        delay = max(0.0, when - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._apply(self.core.handle_timer(self._clock()))


def _normal(host: str) -> str:
    """An address in one canonical spelling, without an IPv6 zone."""
    try:
        return str(ip_address(host.split("%", 1)[0]))
    except ValueError:
        return host
