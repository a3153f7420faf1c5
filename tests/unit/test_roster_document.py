"""The signed roster document: round trip, and every way a peer's copy can be refused."""

from __future__ import annotations

import dataclasses
import random
import uuid
from ipaddress import IPv4Address, IPv6Address

import msgpack
import pytest

from rms.identity import NodeIdentity
from rms.membership.document import (
    ROSTER_CONTEXT,
    RosterProblem,
    RosterReason,
    SignedRoster,
    sign_roster,
    verify_roster,
)
from rms.membership.roster import Endpoint, Member, Roster
from rms.policy import Policy
from rms.wire.messages.roster import MAX_ROSTER_BYTES
from tests.admission_support import (
    GUARDIAN,
    NOW,
    OTHER_VPN,
    STRANGER,
    VPN_ID,
    found,
    member_of,
    node,
)

TRUSTED = frozenset({GUARDIAN.public_key})


def roster_with(*members: Member, seq: int = 2) -> Roster:
    base = found().roster.roster
    return dataclasses.replace(base, seq=seq, members=(*base.members, *members))


def verify(data: bytes, **kw: object) -> SignedRoster | RosterProblem:
    args: dict[str, object] = {"vpn_id": VPN_ID, "trusted_guardians": TRUSTED, **kw}
    return verify_roster(data, **args)  # type: ignore[arg-type]


def reason(data: bytes, **kw: object) -> RosterReason:
    result = verify(data, **kw)
    assert isinstance(result, RosterProblem), result
    return result.reason


def resign(payload: list[object], who: NodeIdentity = GUARDIAN) -> bytes:
    packed: bytes = msgpack.packb(payload)
    return who.sign(ROSTER_CONTEXT + packed) + packed


def payload_of(signed: SignedRoster) -> list[object]:
    fields: list[object] = msgpack.unpackb(signed.data[64:], use_list=True)
    return fields


def test_sign_and_verify_round_trip() -> None:
    endpoint = Endpoint(IPv4Address("198.18.0.5"), 51820)
    six = Endpoint(IPv6Address("2001:db8::5"), 51821)
    members = (
        dataclasses.replace(member_of(5), endpoint=endpoint),
        dataclasses.replace(member_of(6), endpoint=six),
    )
    signed = sign_roster(GUARDIAN, roster_with(*members))
    result = verify(signed.data)
    assert result == signed
    assert isinstance(result, SignedRoster) and result.roster.members[1].endpoint == endpoint
    assert str(six) == "[2001:db8::5]:51821" and str(endpoint) == "198.18.0.5:51820"
    assert len(signed.digest) == 32 and signed.seq == 2


def test_encoding_is_deterministic() -> None:
    roster = roster_with(member_of(5))
    assert sign_roster(GUARDIAN, roster).data == sign_roster(GUARDIAN, roster).data


def test_every_single_bit_flip_is_refused() -> None:
    data = sign_roster(GUARDIAN, roster_with(member_of(5))).data
    for i in range(len(data)):
        for bit in (0, 5):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            assert isinstance(verify(bytes(flipped)), RosterProblem), (i, bit)


def test_a_roster_from_a_non_guardian_is_refused() -> None:
    forged = dataclasses.replace(found().roster.roster, guardians=(STRANGER.public_key,))
    assert reason(sign_roster(STRANGER, forged).data) is RosterReason.UNTRUSTED_SIGNER


def test_a_trusted_signer_not_listed_as_guardian_is_invalid() -> None:
    signed = found().roster
    fields = payload_of(signed)
    fields[2]["guardians"] = [STRANGER.public_key]  # type: ignore[index]
    assert reason(resign(fields)) is RosterReason.INVALID


def test_wrong_vpn_is_refused() -> None:
    assert reason(found().roster.data, vpn_id=OTHER_VPN) is RosterReason.WRONG_VPN


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: f.__setitem__(0, 2), RosterReason.UNKNOWN_VERSION),
        (lambda f: f.__setitem__(1, b"short"), RosterReason.MALFORMED),
        (lambda f: f.append(1), RosterReason.MALFORMED),
        (lambda f: f[2].__setitem__("seq", -1), RosterReason.MALFORMED),
        (lambda f: f[2].pop("members"), RosterReason.MALFORMED),
        (lambda f: f[2]["members"][0].__setitem__("address", bytes(16)), RosterReason.INVALID),
        (
            lambda f: f[2]["members"][0].__setitem__("endpoint", {"ip": bytes(5), "port": 1}),
            RosterReason.MALFORMED,
        ),
        (lambda f: f[2]["members"].append(f[2]["members"][0]), RosterReason.INVALID),
        (lambda f: f[2]["guardians"].append(f[2]["guardians"][0]), RosterReason.INVALID),
    ],
)
def test_resigned_bad_contents_are_refused(change: object, expected: RosterReason) -> None:
    fields = payload_of(found().roster)
    change(fields)  # type: ignore[operator]
    assert reason(resign(fields)) is expected


def test_an_empty_guardian_list_signed_by_a_trusted_key_is_invalid() -> None:
    fields = payload_of(found().roster)
    fields[2]["guardians"] = []  # type: ignore[index]
    assert reason(resign(fields), trusted_guardians=TRUSTED) is RosterReason.INVALID


def test_unknown_fields_are_ignored() -> None:
    fields = payload_of(found().roster)
    fields[2]["later"] = {"a": 1}  # type: ignore[index]
    assert isinstance(verify(resign(fields)), SignedRoster)


def test_over_capacity_is_refused_even_if_signed() -> None:
    big = Policy(vpn_capacity=20)
    roster = roster_with(*(member_of(n) for n in range(5, 15)))
    signed = sign_roster(GUARDIAN, roster, big)
    assert reason(signed.data) is RosterReason.INVALID
    assert isinstance(verify(signed.data, policy=big), SignedRoster)


def test_signing_refuses_what_verification_would() -> None:
    with pytest.raises(ValueError, match="capacity"):
        sign_roster(GUARDIAN, roster_with(*(member_of(n) for n in range(5, 15))))
    with pytest.raises(ValueError, match="guardian"):
        sign_roster(STRANGER, roster_with())
    with pytest.raises(ValueError, match="twice"):
        sign_roster(GUARDIAN, roster_with(member_of(5), member_of(5)))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", RosterReason.MALFORMED),
        (bytes(64), RosterReason.MALFORMED),
        (bytes(64) + b"\xc1", RosterReason.MALFORMED),
        (bytes(64) + msgpack.packb("text"), RosterReason.MALFORMED),
        (bytes(64) + b"\xdd\xff\xff\xff\xff", RosterReason.OVERSIZED),
        (bytes(MAX_ROSTER_BYTES + 1), RosterReason.OVERSIZED),
    ],
)
def test_junk_is_refused(data: bytes, expected: RosterReason) -> None:
    assert reason(data) is expected


def test_random_junk_and_mutations_never_raise() -> None:
    rng = random.Random(5)
    good = sign_roster(GUARDIAN, roster_with(member_of(5), member_of(6))).data
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        verify(bytes(data))
        verify(rng.randbytes(rng.randrange(0, 400)))


def test_member_helpers() -> None:
    roster = roster_with(member_of(5, location=1, network=2), member_of(6, location=1, network=3))
    assert roster.at_location(uuid.UUID(int=(0xC0DE << 64) | 1)) == 2
    assert roster.member(node(5).public_key) == member_of(5, location=1, network=2)
    assert roster.member(STRANGER.public_key) is None
    assert roster.successor(roster.members, int(NOW * 1000) - 10**6).issued_ms == roster.issued_ms
