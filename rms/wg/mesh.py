"""The mesh controller's core: the minimal change list from observed to desired, sans-IO.

`plan(desired, current, now)` compares an InterfaceConfig with the InterfaceState a backend
read, and returns only what differs, in an order every backend can apply:

1. device: the private key when its public half differs; the listen port when one is asked
   for (0 means "whatever the interface has") and differs;
2. link: up, then addresses added and removed (IPv6 link-local addresses are the kernel's);
3. peers, sorted by key: removals, then updates of what differs, then additions.

Two rules follow WireGuard's own behaviour rather than plain equality:

- An endpoint is never cleared (WireGuard cannot forget one; it learns it from the peer).
- A peer with a live session (a handshake within REJECT_AFTER_TIME, the WireGuard paper's
  section 6.1) keeps the endpoint it roamed to: it proved that address with an authenticated
  packet, and overwriting it would cut traffic until the peer speaks again.

`apply_changes(state, changes)` is the model of what a backend does with a change list, used
by the property tests and the in-memory driver. Time is an argument (`now`, UNIX seconds,
the clock of last_handshake); nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

from dataclasses import replace

from rms.wg.changes import (
    AddAddress,
    AddPeer,
    Change,
    RemoveAddress,
    RemovePeer,
    SetLinkUp,
    SetListenPort,
    SetPrivateKey,
    UpdatePeer,
)
from rms.wg.keys import WgPublicKey
from rms.wg.model import (
    InterfaceConfig,
    InterfaceState,
    IPInterface,
    IPNetwork,
    PeerConfig,
    PeerState,
    managed_addresses,
    sorted_peers,
)

REJECT_AFTER_TIME = 180.0  # seconds; WireGuard paper, section 6.1


def plan(desired: InterfaceConfig, current: InterfaceState, now: float) -> tuple[Change, ...]:
    """The changes that turn current into desired; empty when they already agree."""
    return (*_device(desired, current), *_link(desired, current), *_peers(desired, current, now))


def _device(desired: InterfaceConfig, current: InterfaceState) -> list[Change]:
    out: list[Change] = []
    if current.public_key != desired.public_key:
        out.append(SetPrivateKey(desired.private_key))
    if desired.listen_port not in (0, current.listen_port):
        out.append(SetListenPort(desired.listen_port))
    return out


def _link(desired: InterfaceConfig, current: InterfaceState) -> list[Change]:
    # Up first: an IPv6 address added to a down link is dropped when the link next goes down.
    out: list[Change] = [] if current.up else [SetLinkUp()]
    have = managed_addresses(current.addresses)
    out += [AddAddress(a) for a in _ordered(desired.addresses - have)]
    out += [RemoveAddress(a) for a in _ordered(have - desired.addresses)]
    return out


def _ordered(items: frozenset[IPInterface]) -> list[IPInterface]:
    return sorted(items, key=lambda a: (a.version, a.ip.packed, a.network.prefixlen))


def _peers(desired: InterfaceConfig, current: InterfaceState, now: float) -> list[Change]:
    want = {p.public_key: p for p in desired.peers}
    have = current.peer_map()
    order = sorted(want.keys() | have.keys(), key=lambda k: k.raw)
    removals: list[Change] = [RemovePeer(k) for k in order if k not in want]
    updates: list[Change] = []
    for key in order:
        if key in want and key in have:
            update = _update(want[key], have[key], now)
            if update is not None:
                updates.append(update)
    additions: list[Change] = [AddPeer(want[k]) for k in order if k not in have]
    return removals + updates + additions


def _update(want: PeerConfig, have: PeerState, now: float) -> UpdatePeer | None:
    endpoint = want.endpoint if _move_endpoint(want, have, now) else None
    allowed = want.allowed_ips if want.allowed_ips != have.allowed_ips else None
    keepalive = want.persistent_keepalive
    keepalive_change = keepalive if keepalive != have.persistent_keepalive else None
    if endpoint is None and allowed is None and keepalive_change is None:
        return None
    return UpdatePeer(want.public_key, endpoint, allowed, keepalive_change)


def _move_endpoint(want: PeerConfig, have: PeerState, now: float) -> bool:
    if want.endpoint is None or want.endpoint == have.endpoint:
        return False
    return not live_session(have, now)


def live_session(peer: PeerState, now: float) -> bool:
    """Whether the peer completed a handshake recently enough to still hold a session."""
    return peer.last_handshake is not None and now - peer.last_handshake < REJECT_AFTER_TIME


def apply_changes(state: InterfaceState, changes: tuple[Change, ...]) -> InterfaceState:
    """What a backend makes of state after applying changes (the reference model)."""
    peers = state.peer_map()
    for change in changes:
        if isinstance(change, SetPrivateKey | SetListenPort | SetLinkUp):
            state = _apply_device(state, change)
            if isinstance(change, SetPrivateKey):
                # WireGuard drops a peer that carries the interface's own new key.
                peers.pop(change.private_key.public_key(), None)
        elif isinstance(change, AddAddress | RemoveAddress):
            state = _apply_address(state, change)
        else:
            _apply_peer(peers, change)
    return replace(state, peers=sorted_peers(peers))


def _apply_device(
    state: InterfaceState, change: SetPrivateKey | SetListenPort | SetLinkUp
) -> InterfaceState:
    if isinstance(change, SetPrivateKey):
        return replace(state, public_key=change.private_key.public_key())
    if isinstance(change, SetListenPort):
        return replace(state, listen_port=change.port)
    return replace(state, up=True)


def _apply_address(state: InterfaceState, change: AddAddress | RemoveAddress) -> InterfaceState:
    if isinstance(change, AddAddress):
        return replace(state, addresses=state.addresses | {change.address})
    return replace(state, addresses=state.addresses - {change.address})


def _apply_peer(
    peers: dict[WgPublicKey, PeerState], change: RemovePeer | AddPeer | UpdatePeer
) -> None:
    if isinstance(change, RemovePeer):
        peers.pop(change.public_key, None)
        return
    if isinstance(change, AddPeer):
        cfg = change.peer
        old = peers.get(cfg.public_key, PeerState(cfg.public_key))
        endpoint = cfg.endpoint if cfg.endpoint is not None else old.endpoint
        new = replace(old, endpoint=endpoint, persistent_keepalive=cfg.persistent_keepalive)
        _set_peer(peers, new, cfg.allowed_ips)
        return
    old_state = peers.get(change.public_key)
    if old_state is None:
        return  # update_only: an absent peer stays absent
    _set_peer(peers, _updated(old_state, change), change.allowed_ips)


def _updated(peer: PeerState, change: UpdatePeer) -> PeerState:
    if change.endpoint is not None:
        peer = replace(peer, endpoint=change.endpoint)
    if change.persistent_keepalive is not None:
        peer = replace(peer, persistent_keepalive=change.persistent_keepalive)
    return peer


def _set_peer(
    peers: dict[WgPublicKey, PeerState], peer: PeerState, allowed: frozenset[IPNetwork] | None
) -> None:
    if allowed is not None:
        # An allowed IP belongs to one peer only: giving it to this one takes it from others.
        for key, other in peers.items():
            if key != peer.public_key and other.allowed_ips & allowed:
                peers[key] = replace(other, allowed_ips=other.allowed_ips - allowed)
        peer = replace(peer, allowed_ips=allowed)
    peers[peer.public_key] = peer
