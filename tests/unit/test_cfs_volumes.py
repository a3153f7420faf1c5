"""The CFS's volume source against the real provider core (rms.volumes.ProviderCore).

The RMS control API is a small fake (it hands out the provider's answers as the RMS would
after opening their boxes); the messages are real, signed both ways, and exchanged in
memory. Malformed, oversized, forged, replayed and lost messages are all tried.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest

from cfs.lease import VolumeError
from cfs.rmssource import RmsVolumeSource, own_addresses, parse_answer, public_addresses
from rms.identity import NodeIdentity
from rms.volumes import OfferTerms, ProviderCore, RequestTerms, StorageRequest
from tests.unit.volumes_support import (
    CLIENT,
    CLIENT_ADDRESS,
    EVE,
    MIB,
    NOW,
    PROVIDER,
    PROVIDER_ADDRESS,
    settings,
)

SIZE = 64 * MIB


@dataclass
class FakeControl:
    """The few control routes the source uses; answers come from the provider core."""

    provider: ProviderCore
    answers: list[object] = field(default_factory=list)
    posted: list[dict[str, Any]] = field(default_factory=list)

    async def post_json(self, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        assert route == "/v1/broadcast" and body is not None
        self.posted.append(body)
        terms = RequestTerms.unpack(base64.b64decode(body["terms"]))
        assert terms is not None
        offer = self.provider.consider(
            StorageRequest(
                CLIENT.public_key, bytes([len(self.posted)]) * 16, body["amount"], terms
            ),
            NOW,
        )
        if not isinstance(offer, OfferTerms):
            return {"request_id": "72" * 16}  # the provider stays silent
        self.answers.insert(
            0,
            {
                "answerer": PROVIDER.public_key.hex(),
                "addresses": [str(PROVIDER_ADDRESS)],
                "terms": base64.b64encode(offer.pack()).decode(),
            },
        )
        return {"request_id": "72" * 16}

    async def get_json(self, route: str) -> dict[str, Any]:
        assert route == f"/v1/broadcast/{'72' * 16}/answers"
        return {"answers": self.answers}

    async def status(self) -> dict[str, Any]:
        peer = {"address": f"{PROVIDER_ADDRESS}/64", "endpoint": "198.18.0.7:51820"}
        return {"vpns": [{"address": str(CLIENT_ADDRESS), "peers": [peer, "junk", {"address": 5}]}]}


@dataclass
class Wire:
    """Carries messages to the provider core; can lose some or answer as someone else."""

    provider: ProviderCore
    lose: int = 0
    forger: NodeIdentity | None = None
    sent: list[bytes] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)

    async def __call__(self, host: IPv6Address, port: int, data: bytes, timeout_s: float) -> bytes:
        assert host == PROVIDER_ADDRESS
        self.sent.append(data)
        if self.lose:
            self.lose -= 1
            raise VolumeError("provider unreachable: timeout")
        reply = self.provider.handle(data, NOW).reply
        assert reply is not None
        self.replies.append(reply)
        if self.forger is not None:
            forged = ProviderCore(self.forger, settings(), random.Random(9))
            return forged.handle(data, NOW).reply or b""
        return reply


def make(**wire: Any) -> tuple[RmsVolumeSource, FakeControl, Wire]:
    provider = ProviderCore(PROVIDER, settings(), random.Random(3))
    control, w = FakeControl(provider), Wire(provider, **wire)
    source = RmsVolumeSource(
        CLIENT,
        control,  # type: ignore[arg-type]
        location=b"l" * 16,
        network=b"n" * 16,
        offer_wait_s=0,
        exchange=w,
        clock=lambda: NOW,
        rng=random.Random(4),
    )
    return source, control, w


async def test_offer_claim_renew_release_round_trip() -> None:
    source, control, wire = make()
    (candidate,) = await source.offers(SIZE)
    assert candidate.provider == PROVIDER.node_id.hex()
    assert candidate.address == IPv4Address("198.18.0.7")
    assert control.posted[0]["kind"] == "storage" and control.posted[0]["amount"] == SIZE
    lease = await source.obtain(candidate, SIZE)
    assert lease.size == SIZE and lease.expires_at > NOW
    assert lease.target.iqn.startswith("iqn.2026-11.cloud.true.volume:")
    assert lease.target.portal.startswith("[fd") and lease.target.portal.endswith("]:3260")
    assert len(lease.tunnel.psk) == 32 and lease.tunnel.listen_port == 52000
    assert lease.target.chap_secret not in repr(lease) and "psk" not in repr(lease.tunnel)
    renewed = await source.renew(lease)
    assert renewed.expires_at >= lease.expires_at
    await source.release(lease)
    assert len(wire.sent) == 3


async def test_a_lost_claim_is_resent_with_the_same_id_and_granted_once() -> None:
    source, _, wire = make(lose=1)
    (candidate,) = await source.offers(SIZE)
    lease = await source.obtain(candidate, SIZE)
    assert len(wire.sent) == 2 and wire.sent[0] != wire.sent[1]  # re-signed, same claim id
    assert lease.lease_id


async def test_an_unreachable_provider_is_a_clear_error_and_the_claim_is_dropped() -> None:
    source, _, _ = make(lose=10)
    (candidate,) = await source.offers(SIZE)
    with pytest.raises(VolumeError, match="no answer after 3 tries"):
        await source.obtain(candidate, SIZE)
    assert not source.core.pending


async def test_a_grant_signed_by_someone_else_is_refused() -> None:
    source, _, _ = make(forger=EVE)
    (candidate,) = await source.offers(SIZE)
    with pytest.raises(VolumeError, match="wrong_signer"):
        await source.obtain(candidate, SIZE)


async def test_a_replayed_reply_does_not_count_as_a_renewal() -> None:
    source, _, wire = make()
    (candidate,) = await source.offers(SIZE)
    lease = await source.obtain(candidate, SIZE)
    (grant,) = wire.replies

    async def replay(host: IPv6Address, port: int, data: bytes, timeout_s: float) -> bytes:
        return grant

    source.exchange = replay
    with pytest.raises(VolumeError, match="refused"):
        await source.renew(lease)


@pytest.mark.parametrize(
    "answer",
    [
        None,
        "text",
        {"answerer": "zz" * 32, "addresses": [], "terms": ""},
        {"answerer": PROVIDER.public_key.hex(), "addresses": ["not an address"], "terms": "AA=="},
        {
            "answerer": PROVIDER.public_key.hex(),
            "addresses": [str(PROVIDER_ADDRESS)],
            "terms": "A" * 4000,
        },
        {"answerer": PROVIDER.public_key.hex(), "addresses": [7], "terms": "gA=="},
        {
            "answerer": PROVIDER.public_key.hex()[:-2],
            "addresses": [str(PROVIDER_ADDRESS)],
            "terms": "80",
        },
    ],
)
async def test_malformed_and_oversized_answers_are_dropped(answer: object) -> None:
    assert parse_answer(answer) is None
    source, control, _ = make()
    control.answers.append(answer)
    found = await source.offers(SIZE)
    assert len(found) == 1 and source.dropped == 1


async def test_offers_too_small_are_dropped_and_unknown_offers_refused() -> None:
    source, _, _ = make()
    assert await source.offers(512 * MIB) == []  # more than the provider has: no answer
    await source.offers(SIZE)
    (candidate,) = await source.offers(2 * SIZE)  # the earlier 64 MiB answer is too small
    assert source.dropped == 1
    stale = type(candidate)(candidate.provider, "l", "n", None, 0.5, "00" * 16)
    with pytest.raises(VolumeError, match="no offer"):
        await source.obtain(stale, SIZE)


def test_status_parsing_takes_only_well_formed_addresses() -> None:
    status = {
        "vpns": [
            {
                "address": "fd00::1",
                "peers": [{"address": "fd00::2/64", "endpoint": "[2001:db8::9]:5"}],
            },
            3,
        ]
    }
    assert own_addresses(status) == [IPv6Address("fd00::1")]
    assert public_addresses(status) == {IPv6Address("fd00::2"): IPv6Address("2001:db8::9")}
    assert (
        own_addresses({"vpns": "x"}) == []
        and public_addresses({"vpns": [{"peers": [{"endpoint": "x" * 99}]}]}) == {}
    )


async def test_offers_from_providers_sharing_no_vpn_are_left_out() -> None:
    source, control, _ = make()
    await source.offers(SIZE)
    first = control.answers[0]
    assert isinstance(first, dict)
    far = dict(first)
    far["addresses"] = ["fd99:1:2::7"]
    control.answers.append(far)
    assert len(await source.offers(SIZE)) == 2  # the fresh offer and the first one again
    assert source.unreachable == 1
