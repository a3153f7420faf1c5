"""Hypothesis strategies shared by the WireGuard tests, and checks that they keep WireGuard's rules.

Generated states obey what a real interface can report: peers sorted by key, every allowed
IP owned by one peer only, no peer carrying the interface's own key.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_interface

from hypothesis import given
from hypothesis import strategies as st

from rms.wg.keys import WgPrivateKey, WgPublicKey
from rms.wg.model import (
    Endpoint,
    InterfaceConfig,
    InterfaceState,
    IPInterface,
    IPNetwork,
    PeerConfig,
    PeerState,
)

NOW = 1_700_000_000.0
# A small key space, so desired and current states share peers often.
PUBLIC_KEYS = [WgPublicKey(bytes([i]) * 32) for i in range(1, 9)]
PRIVATE_KEYS = [WgPrivateKey(bytes([0x40 + i]) * 32) for i in range(3)]
NETWORKS: list[IPNetwork] = [
    *(IPv6Network(f"fd00:0:0:{i}::/64") for i in range(6)),
    *(IPv4Network(f"10.0.{i}.0/24") for i in range(4)),
    IPv6Network("fd00::/48"),
]
ADDRESSES: list[IPInterface] = [
    ip_interface("fd00::1/64"),
    ip_interface("fd00::2/64"),
    ip_interface("10.1.0.1/24"),
    ip_interface("fe80::1/64"),  # link-local: the kernel's, never managed
]

endpoints = st.none() | st.builds(
    Endpoint,
    st.sampled_from([ip_address("192.0.2.1"), ip_address("2001:db8::1")]),
    st.sampled_from([51820, 51821]),
)
keepalives = st.sampled_from([0, 25, 60])
handshakes = st.none() | st.sampled_from([NOW - 1000, NOW - 181, NOW - 179, NOW - 5, NOW])
counters = st.integers(min_value=0, max_value=2**64 - 1)


@st.composite
def _owners(draw: st.DrawFn, keys: list[WgPublicKey]) -> dict[WgPublicKey, frozenset[IPNetwork]]:
    """Each network goes to at most one of keys, as WireGuard's allowed-IPs table has it."""
    owned: dict[WgPublicKey, set[IPNetwork]] = {k: set() for k in keys}
    for net in NETWORKS:
        owner = draw(st.none() | st.sampled_from(keys)) if keys else None
        if owner is not None:
            owned[owner].add(net)
    return {k: frozenset(v) for k, v in owned.items()}


@st.composite
def interface_states(draw: st.DrawFn) -> InterfaceState:
    """A state a real interface could report."""
    keys = sorted(draw(st.sets(st.sampled_from(PUBLIC_KEYS))), key=lambda k: k.raw)
    owners = draw(_owners(keys))
    peers = tuple(
        PeerState(
            k,
            draw(endpoints),
            owners[k],
            draw(keepalives),
            draw(handshakes),
            draw(counters),
            draw(counters),
        )
        for k in keys
    )
    public = draw(st.none() | st.sampled_from([k.public_key() for k in PRIVATE_KEYS]))
    return InterfaceState(
        "wg0",
        public,
        draw(st.sampled_from([0, 51820, 51821])),
        peers,
        frozenset(draw(st.sets(st.sampled_from(ADDRESSES)))),
        draw(st.booleans()),
    )


@st.composite
def interface_configs(draw: st.DrawFn) -> InterfaceConfig:
    """A valid desired config over the same small key and address space."""
    keys = sorted(draw(st.sets(st.sampled_from(PUBLIC_KEYS))), key=lambda k: k.raw)
    owners = draw(_owners(keys))
    peers = tuple(PeerConfig(k, draw(endpoints), owners[k], draw(keepalives)) for k in keys)
    managed = [a for a in ADDRESSES if not a.ip.is_link_local]
    return InterfaceConfig(
        "wg0",
        draw(st.sampled_from(PRIVATE_KEYS)),
        draw(st.sampled_from([0, 51820, 51821])),
        frozenset(draw(st.sets(st.sampled_from(managed)))),
        tuple(draw(st.permutations(peers))),
    )


def get_answer(state: InterfaceState, private: WgPrivateKey) -> bytes:
    """The `get=1` answer wireguard-go would give for state, with this private key."""
    lines = [f"private_key={private.hex()}", f"listen_port={state.listen_port}"]
    for peer in state.peers:
        seconds = peer.last_handshake or 0
        lines += [f"public_key={peer.public_key.hex()}", "protocol_version=1"]
        lines += [f"endpoint={peer.endpoint}"] if peer.endpoint else []
        lines += [
            f"last_handshake_time_sec={int(seconds)}",
            f"last_handshake_time_nsec={round((seconds % 1) * 1e9)}",
            f"tx_bytes={peer.tx_bytes}",
            f"rx_bytes={peer.rx_bytes}",
            f"persistent_keepalive_interval={peer.persistent_keepalive}",
            *(f"allowed_ip={n}" for n in peer.allowed_ips),
        ]
    return ("\n".join([*lines, "errno=0"]) + "\n\n").encode()


@given(interface_states())
def test_generated_states_keep_wireguard_rules(state: InterfaceState) -> None:
    keys = [p.public_key for p in state.peers]
    assert keys == sorted(keys, key=lambda k: k.raw)
    nets = [n for p in state.peers for n in p.allowed_ips]
    assert len(nets) == len(set(nets))


@given(interface_configs())
def test_generated_configs_are_valid(config: InterfaceConfig) -> None:
    assert config.public_key not in {p.public_key for p in config.peers}
