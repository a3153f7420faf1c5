"""Locality: UUIDs from names, networks from addresses, refusals of unusable addresses."""

from __future__ import annotations

import ipaddress
import uuid

import pytest

from rms.vpn.locality import LocalityError, as_uuid, network_of, resolve, usable_addresses


def test_a_uuid_is_kept_and_a_name_is_hashed_stably() -> None:
    u = uuid.uuid4()
    assert as_uuid("location", str(u)) == u
    assert as_uuid("location", "Berlin") == as_uuid("location", " berlin ")
    assert as_uuid("location", "berlin") != as_uuid("network", "berlin")


def test_networks_are_slash_24_and_slash_48() -> None:
    a = ipaddress.ip_address("198.18.0.11")
    b = ipaddress.ip_address("198.18.0.200")
    c = ipaddress.ip_address("198.18.1.11")
    assert network_of(a) == network_of(b) != network_of(c)
    d = ipaddress.ip_address("2001:db8:1:2::1")
    e = ipaddress.ip_address("2001:db8:1:ffff::1")
    assert network_of(d) == network_of(e)


def test_resolve_uses_the_first_address_for_the_network() -> None:
    loc = resolve(["198.18.0.11", "2001:2::c612:b"], "lab-west", "")
    assert [str(i) for i in loc.public_ips] == ["198.18.0.11", "2001:2::c612:b"]
    assert loc.location == as_uuid("location", "lab-west")
    assert loc.network == network_of(loc.public_ips[0])
    assert resolve(["198.18.0.11"], "", "isp-a").network == as_uuid("network", "isp-a")


@pytest.mark.parametrize(
    ("ips", "needle"),
    [
        ([], "no public address"),
        (["not-an-ip"], "not an IP address"),
        (["127.0.0.1"], "cannot be reached"),
        (["::"], "cannot be reached"),
        (["224.0.0.1"], "cannot be reached"),
        (["1.2.3.4" + "9" * 5000], "not an IP address"),
    ],
)
def test_bad_addresses_are_refused(ips: list[str], needle: str) -> None:
    with pytest.raises(LocalityError, match=needle):
        resolve(ips, "", "")


def test_usable_addresses_skip_loopback_link_local_and_overlays() -> None:
    found = usable_addresses(
        ["127.0.0.1/8", "198.18.0.11/15", "fe80::1/64", "fd12:3456::1/64", "2001:2::c612:b/64", "x"]
    )
    assert found == ["198.18.0.11", "2001:2::c612:b"]
