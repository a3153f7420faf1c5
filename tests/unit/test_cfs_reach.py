"""The CFS asks the RMS for one more management VPN while too few providers are within reach
(docs/cfs.md, "Reach"): the rule (cfs.placement.more_vpns) and the source that applies it,
over a fake control API whose status is also given malformed."""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Any

import pytest

from cfs.placement import POOL_WIDTH, SPARES, more_vpns
from cfs.rmssource import RmsVolumeSource
from rms.control.client import ControlError
from rms.identity import NodeIdentity
from rms.volumes import OfferTerms, ProviderCore
from tests.unit.volumes_support import CLIENT, MIB, NOW, request, settings

SIZE = 64 * MIB
NEEDED = POOL_WIDTH + SPARES


@pytest.mark.parametrize(
    ("reachable", "unreachable", "held", "wanted", "most", "asked"),
    [
        (9, 4, 2, 2, 4, 3),  # the lab's case: 9 of 13 reachable
        (9, 4, 3, 3, 4, 4),  # joined, still short: one more
        (NEEDED, 2, 2, 2, 4, None),  # enough
        (5, 0, 2, 2, 4, None),  # nobody more answered: another VPN would not help
        (9, 4, 2, 3, 4, None),  # still joining the VPN asked for before
        (9, 4, 4, 4, 4, None),  # at the policy's max
        (9, 4, 2, None, 4, None),  # an RMS that says nothing of wanting (no route)
        (9, 4, 2, 2, None, None),
    ],
)
def test_one_more_vpn_only_when_short_and_settled(
    reachable: int, unreachable: int, held: int, wanted: int | None, most: int | None,
    asked: int | None,
) -> None:  # fmt: skip
    assert more_vpns(reachable, unreachable, held, wanted, most) == asked


def vpn_address(vpn: int, host: int) -> IPv6Address:
    return IPv6Address(f"fd00:{vpn:x}::{host:x}")


@dataclass
class FakeControl:
    """Broadcast answers from 13 providers; node `n` sits in VPNs `vpns_of[n]`."""

    held: list[int]
    joins: object
    vpns_of: dict[int, tuple[int, ...]]
    posted: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)
    refuse_want: bool = False

    async def post_json(self, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.posted.append((route, body))
        if route == "/v1/vpns/want" and self.refuse_want:
            raise ControlError("control API refused (404): not found")
        return {"request_id": "72" * 16}

    async def get_json(self, route: str) -> dict[str, Any]:
        terms = ProviderCore(NodeIdentity.from_seed(b"p" * 32), settings(), random.Random(1))
        offer = terms.consider(request(SIZE), NOW)
        assert isinstance(offer, OfferTerms)
        answers: list[object] = ["junk", {"answerer": 5}]
        for n, vpns in self.vpns_of.items():
            answers.append(
                {
                    "answerer": NodeIdentity.from_seed(bytes([n]) * 32).public_key.hex(),
                    "addresses": [str(vpn_address(v, n)) for v in vpns],
                    "terms": base64.b64encode(offer.pack()).decode(),
                }
            )
        return {"answers": answers}

    async def status(self) -> dict[str, Any]:
        vpns = [{"address": f"{vpn_address(v, 0xC)}/64", "peers": []} for v in self.held]
        return {"vpns": vpns, "vpn_joins": self.joins}

    def asked(self) -> list[dict[str, Any]]:
        return [body for route, body in self.posted if route == "/v1/vpns/want" and body]

    def wants(self) -> list[int]:
        return [body["vpns"] for body in self.asked()]


def lab_like(joins: object, held: tuple[int, ...] = (1, 2)) -> FakeControl:
    # 13 providers: 4 in VPN 1, 5 in VPN 2 (node1's), the other 4 only in VPNs 3 and 4
    vpns_of: dict[int, tuple[int, ...]] = {
        n: ((1,) if n < 5 else (2,) if n < 10 else (3, 4)) for n in range(1, 14)
    }
    return FakeControl(list(held), joins, vpns_of)


def source(control: FakeControl) -> RmsVolumeSource:
    return RmsVolumeSource(
        CLIENT, control,  # type: ignore[arg-type]
        location=b"l" * 16, network=b"n" * 16, offer_wait_s=0, clock=lambda: NOW,
        rng=random.Random(4),
    )  # fmt: skip


WANTED = {"wanted": {"count": 2, "source": "policy", "target": 2, "max": 4}}


async def test_a_node_reaching_9_of_13_asks_for_a_third_vpn_then_stops_once_it_reaches() -> None:
    control = lab_like(WANTED)
    src = source(control)
    found = await src.offers(SIZE)
    assert len(found) == 9 and src.unreachable == 4
    assert control.wants() == [3]
    # toward the 4 beyond reach, in VPNs 3 and 4: joining either reaches them
    toward = {str(vpn_address(v, n)) for n in range(10, 14) for v in (3, 4)}
    assert set(control.asked()[0]["toward"]) == toward
    # the RMS took the request but has not joined yet: nothing more is asked
    control.joins = {"wanted": {"count": 3, "source": "request", "target": 2, "max": 4}}
    await src.check_reach()
    assert control.wants() == [3]
    # joined VPN 3: all 13 within reach, nothing more is asked
    control.held.append(3)
    await src.check_reach()
    assert control.wants() == [3]


async def test_a_node_still_short_after_joining_asks_for_one_more() -> None:
    control = lab_like({"wanted": {"count": 3, "source": "request", "target": 2, "max": 4}})
    control.vpns_of.update({n: (5,) for n in range(10, 14)})  # the others only in VPN 5
    control.held.append(3)  # the third VPN brought nobody new
    src = source(control)
    await src.offers(SIZE)
    assert control.wants() == [4]


async def test_a_check_before_any_offer_asks_nothing() -> None:
    control = lab_like(WANTED)
    await source(control).check_reach()
    assert control.posted == []


@pytest.mark.parametrize(
    "joins",
    [
        None,
        "junk",
        [],
        {"wanted": "3"},
        {"wanted": {"count": "2", "max": 4}},
        {"wanted": {"count": 2, "max": True}},
        {"wanted": {"count": 2.0, "max": 4.0}},
        {"wanted": {"count": None}},
    ],
)
async def test_a_malformed_status_asks_nothing_and_offers_still_come(joins: object) -> None:
    control = lab_like(joins)
    src = source(control)
    assert len(await src.offers(SIZE)) == 9
    await src.check_reach()
    assert control.wants() == []


async def test_an_rms_that_refuses_the_request_costs_nothing_but_a_log_line() -> None:
    control = lab_like(WANTED)
    control.refuse_want = True
    src = source(control)
    assert len(await src.offers(SIZE)) == 9
    assert control.wants() == [3]
