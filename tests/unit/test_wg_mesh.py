"""The mesh controller: minimal, ordered, idempotent plans that converge on the desired state."""

from __future__ import annotations

from ipaddress import ip_interface, ip_network

from hypothesis import given
from hypothesis import strategies as st

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
from rms.wg.mesh import REJECT_AFTER_TIME, apply_changes, live_session, plan
from rms.wg.model import (
    Endpoint,
    InterfaceConfig,
    InterfaceState,
    IPNetwork,
    PeerConfig,
    PeerState,
)
from tests.unit.test_wg_support import (
    NOW,
    PRIVATE_KEYS,
    PUBLIC_KEYS,
    counters,
    handshakes,
    interface_configs,
    interface_states,
)

KEY = PRIVATE_KEYS[0]
P1, P2, P3, P4 = PUBLIC_KEYS[:4]
EP = Endpoint.parse("192.0.2.1:51820")
EP2 = Endpoint.parse("192.0.2.2:51820")
ME = ip_interface("fd00::1/64")


def peer(
    key: WgPublicKey, n: int, endpoint: Endpoint | None = EP, keepalive: int = 25
) -> PeerConfig:
    return PeerConfig(key, endpoint, nets(n), keepalive)


def nets(n: int) -> frozenset[IPNetwork]:
    return frozenset({ip_network(f"fd00::{n}/128")})


def must(found: PeerState | None) -> PeerState:
    assert found is not None
    return found


def config(*peers: PeerConfig, port: int = 51820) -> InterfaceConfig:
    return InterfaceConfig("wg0", KEY, port, frozenset({ME}), peers)


def state_of(cfg: InterfaceConfig, handshake: float | None = None) -> InterfaceState:
    """The state of an interface that is exactly as configured."""
    peers = tuple(
        PeerState(p.public_key, p.endpoint, p.allowed_ips, p.persistent_keepalive, handshake, 7, 9)
        for p in sorted(cfg.peers, key=lambda p: p.public_key.raw)
    )
    return InterfaceState(cfg.name, cfg.public_key, cfg.listen_port, peers, cfg.addresses, True)


def test_a_fresh_interface_gets_link_addresses_and_peers_in_order() -> None:
    desired = config(peer(P2, 2), peer(P1, 1))
    fresh = InterfaceState("wg0", KEY.public_key(), 51820)
    assert plan(desired, fresh, NOW) == (
        SetLinkUp(),
        AddAddress(ME),
        AddPeer(peer(P1, 1)),
        AddPeer(peer(P2, 2)),
    )


def test_an_interface_as_configured_needs_nothing() -> None:
    desired = config(peer(P1, 1), peer(P2, 2))
    assert plan(desired, state_of(desired, NOW - 3), NOW) == ()


def test_swapping_one_peer_touches_only_that_peer() -> None:
    before = config(peer(P1, 1), peer(P2, 2), peer(P3, 3))
    after = config(peer(P1, 1), peer(P2, 2), peer(P4, 4))
    assert plan(after, state_of(before), NOW) == (RemovePeer(P3), AddPeer(peer(P4, 4)))


def test_updates_name_only_the_fields_that_differ() -> None:
    before = config(peer(P1, 1), peer(P2, 2))
    after = config(peer(P1, 1, keepalive=0), peer(P2, 5))
    assert plan(after, state_of(before), NOW) == (
        UpdatePeer(P1, persistent_keepalive=0),
        UpdatePeer(P2, allowed_ips=nets(5)),
    )


def test_device_changes_come_first() -> None:
    before = config(peer(P1, 1))
    other_key = InterfaceConfig("wg0", PRIVATE_KEYS[1], 51821, frozenset({ME}), (peer(P2, 2),))
    assert plan(other_key, state_of(before), NOW) == (
        SetPrivateKey(PRIVATE_KEYS[1]),
        SetListenPort(51821),
        RemovePeer(P1),
        AddPeer(peer(P2, 2)),
    )


def test_port_zero_means_any_port() -> None:
    assert plan(config(port=0), state_of(config(port=40123)), NOW) == ()


def test_an_endpoint_is_never_cleared() -> None:
    roamed = state_of(config(peer(P1, 1, endpoint=EP2)))
    assert plan(config(peer(P1, 1, endpoint=None)), roamed, NOW) == ()


def test_a_live_peer_keeps_the_endpoint_it_roamed_to() -> None:
    desired = config(peer(P1, 1, endpoint=EP))
    roamed = config(peer(P1, 1, endpoint=EP2))
    assert plan(desired, state_of(roamed, NOW - 10), NOW) == ()
    stale = state_of(roamed, NOW - REJECT_AFTER_TIME)
    assert plan(desired, stale, NOW) == (UpdatePeer(P1, endpoint=EP),)
    assert plan(desired, state_of(roamed, None), NOW) == (UpdatePeer(P1, endpoint=EP),)


def test_addresses_are_exact_but_link_local_ones_are_left_alone() -> None:
    desired = config()
    extra = ip_interface("fd00::99/64")
    kernel_made = ip_interface("fe80::1234/64")
    current = state_of(desired)
    current = InterfaceState(
        "wg0", current.public_key, 51820, (), frozenset({extra, kernel_made}), True
    )
    assert plan(desired, current, NOW) == (AddAddress(ME), RemoveAddress(extra))


def test_the_model_moves_an_allowed_ip_between_peers_as_wireguard_does() -> None:
    state = state_of(config(peer(P1, 1), peer(P2, 2)))
    moved = apply_changes(state, (UpdatePeer(P2, allowed_ips=nets(1)),))
    assert must(moved.peer(P1)).allowed_ips == frozenset()
    assert must(moved.peer(P2)).allowed_ips == nets(1)


def test_the_model_skips_updates_of_absent_peers_and_drops_its_own_key() -> None:
    state = state_of(config(peer(P1, 1)))
    assert apply_changes(state, (UpdatePeer(P2, persistent_keepalive=1),)) == state
    state = InterfaceState("wg0", None, 0, (PeerState(KEY.public_key()),))
    assert apply_changes(state, (SetPrivateKey(KEY),)).peers == ()


def agrees(desired: InterfaceConfig, state: InterfaceState, before: InterfaceState) -> bool:
    """Whether state is desired, give or take the endpoints WireGuard rules keep."""
    if state.public_key != desired.public_key or not state.up:
        return False
    if desired.listen_port not in (0, state.listen_port):
        return False
    if {a for a in state.addresses if not a.ip.is_link_local} != desired.addresses:
        return False
    have = state.peer_map()
    if have.keys() != {p.public_key for p in desired.peers}:
        return False
    return all(peer_agrees(p, have[p.public_key], before.peer(p.public_key)) for p in desired.peers)


def peer_agrees(want: PeerConfig, got: PeerState, old: PeerState | None) -> bool:
    settings = (got.allowed_ips, got.persistent_keepalive)
    return settings == (want.allowed_ips, want.persistent_keepalive) and (
        got.endpoint == expected_endpoint(want, old)
    )


def expected_endpoint(want: PeerConfig, old: PeerState | None) -> Endpoint | None:
    """Desired, except that WireGuard never forgets one and a live peer keeps its own."""
    if old is None:
        return want.endpoint
    if want.endpoint is None or live_session(old, NOW):
        return old.endpoint
    return want.endpoint


@given(interface_configs(), interface_states())
def test_applying_a_plan_reaches_the_desired_state(
    desired: InterfaceConfig, current: InterfaceState
) -> None:
    after = apply_changes(current, plan(desired, current, NOW))
    assert agrees(desired, after, current)


@given(interface_configs(), interface_states())
def test_plans_are_idempotent(desired: InterfaceConfig, current: InterfaceState) -> None:
    after = apply_changes(current, plan(desired, current, NOW))
    assert plan(desired, after, NOW) == ()


@given(interface_configs(), handshakes, st.data())
def test_desired_against_itself_is_empty(
    desired: InterfaceConfig, handshake: float | None, data: st.DataObject
) -> None:
    exact = state_of(desired, handshake)
    peers = tuple(
        PeerState(
            p.public_key,
            p.endpoint,
            p.allowed_ips,
            p.persistent_keepalive,
            p.last_handshake,
            data.draw(counters),
            data.draw(counters),
        )
        for p in exact.peers
    )
    current = InterfaceState(
        "wg0", exact.public_key, exact.listen_port, peers, exact.addresses, True
    )
    assert plan(desired, current, NOW) == ()


@given(interface_configs(), interface_states())
def test_plans_are_minimal(desired: InterfaceConfig, current: InterfaceState) -> None:
    changes = plan(desired, current, NOW)
    wanted = {p.public_key: p for p in desired.peers}
    touched = [touched_key(c) for c in changes]
    keys = [k for k in touched if k is not None]
    assert len(keys) == len(set(keys)), "a peer is touched once at most"
    for change in changes:
        if isinstance(change, UpdatePeer):
            assert (change.endpoint, change.allowed_ips, change.persistent_keepalive) != (
                None,
                None,
                None,
            )
    for have in current.peers:
        want = wanted.get(have.public_key)
        if want is not None and same_settings(want, have):
            assert have.public_key not in keys
    after = apply_changes(current, changes)
    for have in current.peers:
        if have.public_key not in keys and have.public_key in wanted:
            # Untouched peers keep their session and counters.
            kept = after.peer(have.public_key)
            assert kept is not None
            assert (kept.last_handshake, kept.rx_bytes) == (have.last_handshake, have.rx_bytes)


def touched_key(change: Change) -> object:
    if isinstance(change, RemovePeer | UpdatePeer):
        return change.public_key
    if isinstance(change, AddPeer):
        return change.peer.public_key
    return None


def same_settings(want: PeerConfig, have: PeerState) -> bool:
    return (
        want.allowed_ips == have.allowed_ips
        and want.persistent_keepalive == have.persistent_keepalive
        and want.endpoint in (None, have.endpoint)
    )
