"""The volume protocol end to end over the sans-IO cores: offer, claim, grant, renew, release,
expiry, idempotent retries and capacity accounting (docs/volumes.md)."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from rms.volumes import (
    Export,
    Granted,
    OfferTerms,
    Reason,
    Refused,
    Rejected,
    Released,
    Renewed,
    RequestTerms,
    Unexport,
    inner_addresses,
    iqn_for,
    pick_endpoint,
    volume_prefix,
)
from tests.unit.volumes_support import (
    CLIENT,
    CLIENT_ADDRESS,
    MIB,
    NOW,
    PROVIDER,
    PROVIDER_ADDRESS,
    WG_KEY,
    pair,
    request,
)

KEY = PROVIDER.public_key


def test_a_whole_exchange_grants_a_lease_with_working_secrets() -> None:
    p = pair()
    offer = p.offer()
    assert offer.terms.size == 64 * MIB and offer.terms.count == 1
    assert offer.provider_id == PROVIDER.node_id
    _, data = p.claim(offer)
    outcome = p.provider.handle(data, NOW)
    assert outcome.event == "granted"
    (action,) = outcome.actions
    assert isinstance(action, Export)
    assert action.lease.client == CLIENT.public_key and action.lease.client_wg_key == WG_KEY
    assert action.lease.client_endpoint == CLIENT_ADDRESS
    event = p.client.receive(outcome.reply or b"", KEY, NOW)
    assert isinstance(event, Granted)
    secrets = event.lease.secrets
    assert secrets.iqn == iqn_for(event.lease.volume_id)
    assert (secrets.portal, secrets.client_address) == inner_addresses(event.lease.volume_id)
    assert secrets.chap_secret == action.lease.secrets.chap_secret
    assert secrets.wg_key == action.lease.wg_private.public_key().raw
    assert (secrets.endpoint, secrets.endpoint_port) == (PROVIDER_ADDRESS, action.lease.wg_port)
    assert p.provider.used == 64 * MIB and p.provider.free == 192 * MIB


def test_secrets_never_print() -> None:
    lease = pair().lease()
    assert lease.secrets.chap_secret not in repr(lease)
    assert lease.secrets.wg_psk.hex() not in repr(lease.secrets)


def test_a_repeated_claim_gets_the_same_grant_and_no_second_export() -> None:
    p = pair()
    claim_id, first = p.claim(p.offer())
    granted = p.provider.handle(first, NOW)
    again = p.provider.handle(p.client.claim_again(claim_id, NOW + 1), NOW + 1)
    assert again.event == "granted_again" and again.actions == ()
    lost = p.client.receive(again.reply or b"", KEY, NOW + 1)  # the first grant was lost
    assert isinstance(lost, Granted)
    late = p.client.receive(granted.reply or b"", KEY, NOW + 2)  # and then arrives late
    assert isinstance(late, Granted) and late.lease is lost.lease
    assert len(p.provider.leases) == 1 and len(p.client.leases) == 1


def test_the_same_request_delivered_twice_gets_the_same_offer() -> None:
    p = pair()
    first = p.provider.consider(request(), NOW)
    second = p.provider.consider(request(), NOW + 1)
    assert isinstance(first, OfferTerms) and first == second


def test_renewal_extends_and_a_repeated_renewal_returns_the_same_expiry() -> None:
    p = pair()
    lease = p.lease()
    first = p.client.renew(lease.volume_id, NOW + 30)
    renewed = p.provider.handle(first, NOW + 30)
    retry = p.client.renew(lease.volume_id, NOW + 31)  # the reply was lost: same renewal id
    again = p.provider.handle(retry, NOW + 31)
    event = p.client.receive(again.reply or b"", KEY, NOW + 31)
    assert isinstance(event, Renewed) and event.expires_ms == int((NOW + 90) * 1000)
    late = p.client.receive(renewed.reply or b"", KEY, NOW + 32)  # answered already
    assert late == Rejected("unsolicited")
    assert p.client.receive(renewed.reply or b"", KEY, NOW + 32) == Rejected("replayed")
    assert p.provider.leases[lease.volume_id].expires_ms == int((NOW + 90) * 1000)


def test_renewal_is_due_halfway_through_the_lease() -> None:
    p = pair()
    lease = p.lease()
    assert p.client.due(NOW + 29) == []
    assert p.client.due(NOW + 30) == [lease.volume_id]


def test_release_tears_down_and_wipes_and_a_repeat_is_answered_again() -> None:
    p = pair()
    lease = p.lease()
    out = p.provider.handle(p.client.release(lease.volume_id, NOW + 5), NOW + 5)
    (action,) = out.actions
    assert isinstance(action, Unexport) and action.why == "released"
    assert action.iqn == lease.secrets.iqn
    assert p.provider.used == 0
    again = p.provider.handle(p.client.release(lease.volume_id, NOW + 6), NOW + 6)
    assert again.event == "released_again" and again.actions == ()
    assert isinstance(p.client.receive(again.reply or b"", KEY, NOW + 6), Released)
    assert lease.volume_id not in p.client.leases


def test_an_unrenewed_lease_expires_and_is_wiped() -> None:
    p = pair()
    lease = p.lease()
    assert p.provider.next_timer() == pytest.approx(NOW + 60)
    assert p.provider.handle_timer(NOW + 59) == []
    (action,) = p.provider.handle_timer(NOW + 60)
    assert isinstance(action, Unexport) and action.why == "expired"
    late = p.provider.handle(p.client.renew(lease.volume_id, NOW + 61), NOW + 61)
    event = p.client.receive(late.reply or b"", KEY, NOW + 61)
    assert isinstance(event, Refused) and event.reason == Reason.LEASE_EXPIRED


def test_capacity_is_accounted_at_grant_time() -> None:
    p = pair(capacity=100 * MIB)
    first = p.offer(60 * MIB)
    second_terms = p.provider.consider(request(60 * MIB, request_id=b"s" * 16), NOW)
    assert isinstance(second_terms, OfferTerms)  # offers do not reserve
    p.provider.handle(p.claim(first)[1], NOW)
    assert p.provider.consider(request(60 * MIB, request_id=b"t" * 16), NOW) == (
        Reason.OVER_CAPACITY
    )
    assert p.provider.status(NOW)["free"] == 40 * MIB


def test_requests_the_provider_cannot_serve_are_refused_with_a_reason() -> None:
    p = pair(capacity=100 * MIB)
    assert p.provider.consider(request(200 * MIB), NOW) == Reason.BAD_SIZE
    assert p.provider.consider(request(1024), NOW) == Reason.BAD_SIZE
    assert p.provider.consider(request(requester=PROVIDER), NOW) == Reason.OWN_REQUEST
    own = request()
    excluded = type(own)(own.requester, b"x" * 16, own.size, own.terms, (b"L" * 16,))
    assert p.provider.consider(excluded, NOW) == Reason.EXCLUDED


def test_ports_bound_the_number_of_volumes() -> None:
    p = pair(capacity=1024 * MIB, wg_port_count=1)
    p.lease(16 * MIB)
    assert p.provider.consider(request(16 * MIB, request_id=b"z" * 16), NOW) == Reason.NO_SLOTS


def test_status_names_clients_and_sizes_but_no_secret() -> None:
    p = pair()
    lease = p.lease()
    status = p.provider.status(NOW + 10)
    volumes = status["volumes"]
    assert isinstance(volumes, list)
    (volume,) = volumes
    assert volume["client"] == CLIENT.node_id.hex() and volume["size"] == 64 * MIB
    assert volume["expires_in_s"] == 50.0
    assert lease.secrets.chap_secret not in repr(status)


def test_addressing_is_derived_from_the_volume_id() -> None:
    vid = bytes(range(16))
    net = volume_prefix(vid)
    assert net.prefixlen == 64 and str(net).startswith("fd")
    provider, client = inner_addresses(vid)
    assert provider in net and client in net and provider != client
    assert volume_prefix(b"\x01" * 16) != net
    mine = [IPv6Address("fd00:1::1"), IPv6Address("fd00:2::1")]
    assert pick_endpoint(mine, [IPv6Address("fd00:2::9")]) == (mine[1], IPv6Address("fd00:2::9"))
    assert pick_endpoint(mine, [IPv6Address("fd00:3::9")]) is None


def test_request_terms_round_trip() -> None:
    terms = RequestTerms(8, b"l" * 16, b"n" * 16)
    assert RequestTerms.unpack(terms.pack()) == terms


def test_an_ended_lease_is_forgotten_after_its_tombstone() -> None:
    p = pair()
    _, claim = p.claim(p.offer())
    granted = p.provider.handle(claim, NOW)
    lease = p.client.receive(granted.reply or b"", KEY, NOW)
    assert isinstance(lease, Granted)
    p.provider.handle(p.client.release(lease.lease.volume_id, NOW + 1), NOW + 1)
    p.provider.handle_timer(NOW + 3600)
    assert p.provider.next_timer() == pytest.approx(NOW + 1 + 3600)  # the tombstone
    p.provider.handle_timer(NOW + 3602)
    assert p.provider.next_timer() is None  # nothing held: no lease, offer or tombstone
