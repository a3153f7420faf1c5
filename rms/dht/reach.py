"""Who we can reach and how (docs/dht.md, "Cloud-wide reach").

A node only sends directly to members of its own management VPNs. For every other contact it
needs a route: a short chain of relays ending with a node that shares a VPN with the target.
`Reach` keeps, per VPN, the proven contact with the shortest route into it, and the set of
addresses a round trip has proven (anti-amplification, relay admission).
"""

from __future__ import annotations

from collections import OrderedDict

from rms.dht.puzzle import satisfies
from rms.dht.routing import RoutingTable
from rms.dht.rpc import new_contact
from rms.dht.types import Address, Contact, DhtConfig, SockAddr
from rms.identity import node_id_of

__all__ = ["Reach"]

MAX_PROVEN = 8192  # addresses we remember as proven by a round trip


class Reach:
    """Direct addresses, relay routes and proven addresses of one node."""

    def __init__(self, key: bytes, config: DhtConfig, table: RoutingTable) -> None:
        self.key = key
        self.config = config
        self.table = table
        self.proven: OrderedDict[SockAddr, float] = OrderedDict()
        self.relays: dict[bytes, Contact] = {}  # per VPN: the contact we reach it through

    def prove(self, addr: SockAddr, now: float) -> None:
        """A signed answer came back from `addr`: it is proven."""
        self.proven[addr] = now
        self.proven.move_to_end(addr)
        if len(self.proven) > MAX_PROVEN:
            self.proven.popitem(last=False)

    def is_proven(self, addr: SockAddr, key: bytes | None) -> bool:
        """Whether a round trip proved `addr` (for `key`, if given: a direct table contact)."""
        if addr in self.proven:
            return True
        contact = self.table.get(node_id_of(key)) if key is not None else None
        return contact is not None and not contact.route and self.direct_addr(contact) == addr

    def direct_addr(self, contact: Contact) -> SockAddr | None:
        """The address we send to this contact at, if we share a VPN with it."""
        vpns = self.config.vpns
        return next((a.sock for a in contact.addresses if a.vpn in vpns), None)

    def contact(
        self, key: bytes, addrs: tuple[Address, ...], teller: Contact | None
    ) -> Contact | None:
        """A contact a peer told us about, with a route to it, or None if unusable."""
        if key == self.key or not satisfies(key, self.config.bits) or not addrs:
            return None
        contact = new_contact(key, addrs)
        known = self.table.get(contact.node_id)
        if known is not None:
            return known
        if self.direct_addr(contact) is not None:
            return contact
        route = self.route_to(contact, teller)
        if route is None:
            return None
        contact.route = route
        return contact

    def route_to(self, contact: Contact, teller: Contact | None) -> tuple[Contact, ...] | None:
        """The shortest chain of relays to `contact`, or None beyond `max_relays`."""
        # Through the teller or any contact that shares a VPN with it, the shortest route.
        vias = [self.relays.get(a.vpn) for a in contact.addresses]
        if teller is not None and {a.vpn for a in teller.addresses} & {
            a.vpn for a in contact.addresses
        }:
            vias.append(teller)
        best = None
        for via in vias:
            if via is None or self.table.get(via.node_id) is None:
                continue
            route = (*via.route, via)
            if len(route) <= self.config.max_relays and (best is None or len(route) < len(best)):
                best = route
        return best

    def note_relay(self, contact: Contact) -> None:
        """Remember `contact` as our way into its VPNs if its route is the shortest."""
        if self.table.get(contact.node_id) is None:
            return  # not in the table (its bucket was full): route_to would never use it
        for address in contact.addresses:
            via = self.relays.get(address.vpn)
            stale = via is None or self.table.get(via.node_id) is None
            if stale or len(contact.route) < len(via.route):  # type: ignore[union-attr]
                self.relays[address.vpn] = contact
