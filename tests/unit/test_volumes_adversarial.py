"""The volume protocol under hostile input: malformed, oversized, replayed and forged
messages, claims by the wrong client, over-capacity and stale requests. Every case ends in
a refusal or a silent drop, never an exception and never a second client on a volume."""

from __future__ import annotations

import random
from dataclasses import replace

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rms.identity import NodeIdentity
from rms.volumes import (
    Granted,
    GrantSecrets,
    Offer,
    OfferTerms,
    Reason,
    Refused,
    Rejected,
    RequestTerms,
    seal_secrets,
)
from rms.wire import Accepted, Decoder, Registry, encode, sign_payload
from rms.wire.messages import volumes as msg
from tests.unit.volumes_support import (
    CLIENT,
    CLIENT_ADDRESS,
    EVE,
    MIB,
    NOW,
    PROVIDER,
    PROVIDER_ADDRESS,
    WG_KEY,
    pair,
    request,
)

KEY = PROVIDER.public_key


def refusal(reply: bytes | None, now: float = NOW) -> str:
    """The reason in a provider's `volumes.refused` reply."""
    assert reply is not None
    result = Decoder(Registry(msg.TYPES)).decode(reply, now)
    assert isinstance(result, Accepted) and result.envelope.msg_type == msg.REFUSED
    return str(result.envelope.body["reason"])


# -- malformed, oversized, replayed, stale --------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"x" * 100, b"\xff" * 63, b"\x00" * 64 + b"\x93\x01\x02\x03"],
)
def test_garbage_is_dropped_without_a_reply(data: bytes) -> None:
    p = pair()
    outcome = p.provider.handle(data, NOW)
    assert outcome.reply is None and outcome.actions == () and outcome.event.startswith("dropped")
    assert isinstance(p.client.receive(data, KEY, NOW), Rejected)


def test_an_oversized_message_is_dropped() -> None:
    p = pair()
    outcome = p.provider.handle(b"\x00" * 5000, NOW)
    assert outcome.event == "dropped:oversized" and outcome.reply is None


def test_a_claim_with_a_bad_body_is_dropped() -> None:
    p = pair()
    header = (1, msg.CLAIM.name, CLIENT.public_key, int(NOW * 1000), b"n" * 16)
    body = {"claim_id": b"c" * 16, "offer_id": "not bytes", "size": -1}
    data = sign_payload(CLIENT, msgpack.packb((*header, body)))
    assert p.provider.handle(data, NOW).event == "dropped:bad_body"


def test_a_replayed_claim_is_dropped_and_a_stale_one_too() -> None:
    p = pair()
    _, data = p.claim(p.offer())
    assert p.provider.handle(data, NOW).event == "granted"
    assert p.provider.handle(data, NOW + 1).event == "dropped:replayed"
    claim_id = next(iter(p.client.pending))
    old = p.client.claim_again(claim_id, NOW - 120)
    assert p.provider.handle(old, NOW).event == "dropped:stale"
    assert len(p.provider.leases) == 1


def test_a_replayed_grant_is_rejected_by_the_client() -> None:
    p = pair()
    _, data = p.claim(p.offer())
    reply = p.provider.handle(data, NOW).reply or b""
    assert isinstance(p.client.receive(reply, KEY, NOW), Granted)
    assert p.client.receive(reply, KEY, NOW) == Rejected("replayed")


# -- forged ---------------------------------------------------------------------------------


def test_an_altered_claim_fails_its_signature() -> None:
    p = pair()
    _, data = p.claim(p.offer())
    altered = data[:-1] + bytes([data[-1] ^ 1])
    assert p.provider.handle(altered, NOW).event == "dropped:bad_signature"
    assert p.provider.leases == {}


def test_an_altered_grant_is_rejected() -> None:
    p = pair()
    _, data = p.claim(p.offer())
    reply = p.provider.handle(data, NOW).reply or b""
    altered = reply[:-3] + bytes([reply[-3] ^ 0x40]) + reply[-2:]
    assert p.client.receive(altered, KEY, NOW) == Rejected("bad_signature")


def test_a_grant_signed_by_someone_else_is_rejected() -> None:
    p = pair()
    _, data = p.claim(p.offer())
    reply = p.provider.handle(data, NOW).reply or b""
    lease = next(iter(p.provider.leases.values()))
    body = {
        "claim_id": lease.claim_id,
        "volume_id": lease.volume_id,
        "client": CLIENT.node_id,
        "size": lease.size,
        "expires_ms": lease.expires_ms,
        "box": lease.box,
    }
    forged = encode(EVE, msg.GRANT, body, NOW)
    assert p.client.receive(forged, KEY, NOW) == Rejected("wrong_signer")
    again = encode(EVE, msg.GRANT, body, NOW)  # as if Eve were the provider claimed from
    assert p.client.receive(again, EVE.public_key, NOW) == Rejected("unsolicited")
    assert isinstance(p.client.receive(reply, KEY, NOW), Granted)  # the genuine one still works


def test_a_lease_for_another_client_is_rejected() -> None:
    p = pair()
    eve_offer = Offer.from_answer(
        KEY,
        [PROVIDER_ADDRESS.packed],
        _terms(p.provider.consider(request(requester=EVE, request_id=b"e" * 16), NOW)),
    )
    assert eve_offer is not None
    _, eve_claim = p.eve.claim(eve_offer, WG_KEY, 51820, [CLIENT_ADDRESS], NOW)
    eve_grant = p.provider.handle(eve_claim, NOW).reply or b""
    # The client has no claim with Eve's claim id: unsolicited; and it would not open anyway.
    assert p.client.receive(eve_grant, KEY, NOW) == Rejected("unsolicited")


def test_a_grant_naming_another_client_or_sealed_to_another_key_is_rejected() -> None:
    p = pair()
    claim_id, data = p.claim(p.offer())
    p.provider.handle(data, NOW)
    lease = next(iter(p.provider.leases.values()))
    base = {
        "claim_id": claim_id,
        "volume_id": lease.volume_id,
        "client": CLIENT.node_id,
        "size": lease.size,
        "expires_ms": lease.expires_ms,
        "box": lease.box,
    }
    cases: list[tuple[dict[str, object], str]] = [
        ({"client": EVE.node_id}, "not_for_us"),
        ({"size": lease.size + 1}, "size_mismatch"),
        ({"expires_ms": int(NOW * 1000) - 1}, "expired"),
        ({"box": seal_secrets(lease.secrets, PROVIDER, EVE.public_key)}, "bad_box"),
        (
            {"box": seal_secrets(_wrong_iqn(lease.secrets), PROVIDER, CLIENT.public_key)},
            "bad_grant",
        ),
        ({"volume_id": b"v" * 16}, "bad_grant"),
    ]
    for change, reason in cases:
        forged = encode(PROVIDER, msg.GRANT, {**base, **change}, NOW)
        assert p.client.receive(forged, KEY, NOW) == Rejected(reason), reason
    assert p.client.leases == {}


def _wrong_iqn(secrets: GrantSecrets) -> GrantSecrets:
    return replace(secrets, iqn="iqn.2026-11.evil.example:x")


def _terms(value: object) -> bytes:
    assert isinstance(value, OfferTerms)
    return value.pack()


# -- one client per volume ------------------------------------------------------------------


def test_a_second_client_cannot_claim_renew_or_release_a_leased_volume() -> None:
    p = pair()
    offer = p.offer()
    lease = p.lease()
    # Eve replays the client's offer id in a claim of her own.
    _, eve_claim = p.eve.claim(offer, WG_KEY, 51820, [CLIENT_ADDRESS], NOW)
    assert refusal(p.provider.handle(eve_claim, NOW).reply) == Reason.NOT_YOUR_OFFER
    # Eve forges renewals and a release of the client's volume.
    for kind in (msg.RENEW, msg.RELEASE):
        body: dict[str, object] = {"volume_id": lease.volume_id}
        if kind is msg.RENEW:
            body["renewal_id"] = b"r" * 16
        out = p.provider.handle(encode(EVE, kind, body, NOW + 1), NOW + 1)
        assert refusal(out.reply) == Reason.NOT_YOUR_LEASE and out.actions == ()
    assert p.provider.leases[lease.volume_id].client == CLIENT.public_key
    # After release, Eve's release of the tombstone is still not hers.
    p.provider.handle(p.client.release(lease.volume_id, NOW + 2), NOW + 2)
    late = p.provider.handle(encode(EVE, msg.RELEASE, {"volume_id": lease.volume_id}, NOW), NOW)
    assert refusal(late.reply) == Reason.NOT_YOUR_LEASE


def test_an_offer_is_claimed_at_most_count_times_and_ids_cannot_be_reused() -> None:
    p = pair()
    offer = p.offer()
    p.provider.handle(p.claim(offer)[1], NOW)
    _, second = p.claim(offer)
    assert refusal(p.provider.handle(second, NOW).reply) == Reason.OFFER_TAKEN
    other = _terms(p.provider.consider(request(32 * MIB, request_id=b"2" * 16), NOW))
    other_id = OfferTerms.unpack(other).offer_id  # type: ignore[union-attr]
    first_claim = next(iter(p.provider.leases.values())).claim_id
    body = {
        "claim_id": first_claim,
        "offer_id": other_id,
        "size": 32 * MIB,
        "wg_key": WG_KEY,
        "wg_port": 1,
        "endpoints": [CLIENT_ADDRESS.packed],
    }
    conflict = p.provider.handle(encode(CLIENT, msg.CLAIM, body, NOW + 1), NOW + 1)
    assert refusal(conflict.reply) == Reason.CLAIM_CONFLICT


def test_claims_that_do_not_match_the_offer_are_refused() -> None:
    p = pair()
    offer = p.offer()
    cases: list[tuple[dict[str, object], Reason]] = [
        ({"offer_id": b"u" * 16}, Reason.UNKNOWN_OFFER),
        ({"size": 63 * MIB}, Reason.SIZE_MISMATCH),
        ({"endpoints": []}, Reason.BAD_TERMS),
    ]
    for change, reason in cases:
        body = {
            "claim_id": random.Random(str(change)).randbytes(16),
            "offer_id": offer.terms.offer_id,
            "size": offer.terms.size,
            "wg_key": WG_KEY,
            "wg_port": 51820,
            "endpoints": [CLIENT_ADDRESS.packed],
            **change,
        }
        out = p.provider.handle(encode(CLIENT, msg.CLAIM, body, NOW), NOW)
        assert refusal(out.reply) == reason
    assert p.provider.leases == {}


def test_an_expired_offer_cannot_be_claimed() -> None:
    p = pair()
    _, data = p.claim(p.offer(), NOW + 61)
    assert refusal(p.provider.handle(data, NOW + 61).reply, NOW + 61) == Reason.OFFER_EXPIRED


def test_a_claim_that_no_longer_fits_is_refused_over_capacity() -> None:
    p = pair(capacity=100 * MIB)
    first = p.offer(60 * MIB)
    other = p.provider.consider(request(60 * MIB, requester=EVE, request_id=b"2" * 16), NOW)
    eve_offer = Offer.from_answer(KEY, [PROVIDER_ADDRESS.packed], _terms(other))
    assert eve_offer is not None
    p.provider.handle(p.claim(first)[1], NOW)
    _, eve_claim = p.eve.claim(eve_offer, WG_KEY, 1, [CLIENT_ADDRESS], NOW)
    out = p.provider.handle(eve_claim, NOW)
    assert refusal(out.reply) == Reason.OVER_CAPACITY and p.provider.used == 60 * MIB


def test_a_failed_export_frees_the_lease_and_refuses_the_claim() -> None:
    p = pair()
    claim_id, data = p.claim(p.offer())
    outcome = p.provider.handle(data, NOW)
    vid = next(iter(p.provider.leases))
    failed = p.provider.export_failed(vid, NOW)
    assert failed.actions and p.provider.used == 0
    event = p.client.receive(failed.reply or b"", KEY, NOW)
    assert isinstance(event, Refused) and event.reason == Reason.EXPORT_FAILED
    assert outcome.reply is not None and claim_id not in p.client.pending


# -- terms and offers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb({"count": 0, "location": b"l" * 16, "network": b"n" * 16}),
        msgpack.packb({"count": 1, "location": b"l" * 15, "network": b"n" * 16}),
        msgpack.packb([1, 2, 3]),
        b"\x91" * 600,
        msgpack.packb({"count": 1, "location": b"l" * 16, "network": b"n" * 16, "x": "y" * 600}),
    ],
)
def test_malformed_or_oversized_terms_are_refused(data: bytes) -> None:
    assert RequestTerms.unpack(data) is None
    assert OfferTerms.unpack(data) is None


def test_malformed_offers_are_refused() -> None:
    terms = _terms(pair().provider.consider(request(), NOW))
    assert Offer.from_answer(KEY, ["not an address"], terms) is None
    assert Offer.from_answer(KEY, [], terms) is None
    assert Offer.from_answer(b"short", [PROVIDER_ADDRESS.packed], terms) is None
    assert Offer.from_answer(KEY, [PROVIDER_ADDRESS.packed], terms[:-1]) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_no_input_makes_either_core_raise(data: bytes) -> None:
    p = pair()
    assert p.provider.handle(data, NOW).reply is None
    assert isinstance(p.client.receive(data, KEY, NOW), Rejected)
    assert RequestTerms.unpack(data) is None or isinstance(RequestTerms.unpack(data), RequestTerms)


def test_a_message_from_an_unknown_family_is_dropped() -> None:
    p = pair()
    other = NodeIdentity.from_seed(b"o" * 32)
    ping = sign_payload(
        other, msgpack.packb((1, "node.ping", other.public_key, int(NOW * 1000), b"n" * 16, {}))
    )
    assert p.provider.handle(ping, NOW).event == "dropped:unknown_type"
