"""The nested link of a lease as a WireGuard config: one peer, its preshared key, no leaks."""

from __future__ import annotations

import dataclasses
from ipaddress import ip_network

import pytest

from cfs.attach import interface_name, link_config
from cfs.lease import VolumeError
from rms.wg.changes import AddPeer
from rms.wg.uapi import build_set
from tests.unit.cfs_support import lease


def test_the_provider_is_the_only_peer_with_its_psk_sent_to_wireguard_only() -> None:
    le = lease(3)
    le = dataclasses.replace(
        le, tunnel=dataclasses.replace(le.tunnel, psk=b"\x07" * 32, listen_port=52001)
    )
    config = link_config(le)
    (peer,) = config.peers
    assert config.name == interface_name(le) and len(config.name) <= 15
    assert config.listen_port == 52001
    assert peer.public_key == le.tunnel.peer_key
    assert peer.allowed_ips == frozenset({ip_network(le.tunnel.peer_address)})
    assert f"preshared_key={'07' * 32}" in build_set((AddPeer(peer),)).decode()
    assert "0707" not in repr(peer) + repr(config) + repr(le)


def test_names_differ_per_lease() -> None:
    assert interface_name(lease(1)) != interface_name(lease(2))


@pytest.mark.parametrize("endpoint", ["", "nohost", "fd00::1:5", "[fd00::1]:99999", "198.18.0.1:x"])
def test_a_grant_with_a_bad_endpoint_is_a_clear_error(endpoint: str) -> None:
    le = lease(4)
    bad = dataclasses.replace(le, tunnel=dataclasses.replace(le.tunnel, peer_endpoint=endpoint))
    with pytest.raises(VolumeError, match="unusable link"):
        link_config(bad)


def test_a_short_psk_is_refused() -> None:
    le = lease(5)
    bad = dataclasses.replace(le, tunnel=dataclasses.replace(le.tunnel, psk=b"short"))
    with pytest.raises(VolumeError, match="preshared key is 32 bytes"):
        link_config(bad)
