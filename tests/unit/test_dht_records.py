"""Signed records, the store's selection rules and quotas, and the key puzzle."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rms.dht.puzzle import grind_seed, leading_zero_bits, satisfies
from rms.dht.records import (
    PEER,
    PROVIDER,
    VPN,
    RecordError,
    parse_record,
    peer_fields,
    peer_key,
    provider_fields,
    sign_record,
    vpn_fields,
)
from rms.dht.store import RecordStore, StoreOutcome
from rms.dht.types import Address
from rms.identity import NodeIdentity
from tests.unit.dht_support import NOW, identity

ADDRS = [Address(bytes(16), "10.0.0.1", 7947)]


def peer(seq: int, who: int = 1, expires: float = NOW + 600) -> bytes:
    return sign_record(identity(who), PEER, seq, expires, peer_fields(ADDRS))


def test_a_record_round_trips_and_is_bound_to_its_publisher() -> None:
    record = parse_record(peer(5))
    assert record.seq == 5 and record.key == peer_key(identity(1).public_key)


def test_a_flipped_byte_or_a_foreign_signature_is_refused() -> None:
    raw = peer(5)
    for i in (0, 70, len(raw) - 1):
        with pytest.raises(RecordError):
            parse_record(raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1 :])
    other = identity(2).sign(b"truecloud-dht-record-v1\x00" + raw[64:])
    with pytest.raises(RecordError):
        parse_record(other + raw[64:])


def test_oversized_records_are_refused() -> None:
    fields = provider_fields("storage", 1, [bytes(16)] * 60, ADDRS)
    with pytest.raises(RecordError):
        sign_record(identity(1), PROVIDER, 1, NOW + 60, fields)


def test_a_vpn_record_must_come_from_one_of_its_guardians() -> None:
    guardian = identity(1)
    ok = sign_record(guardian, VPN, 1, NOW + 60, vpn_fields(bytes(16), [guardian.public_key], 8))
    assert parse_record(ok).multi
    with pytest.raises(RecordError):
        sign_record(identity(2), VPN, 1, NOW + 60, vpn_fields(bytes(16), [guardian.public_key], 8))


def test_a_lower_sequence_never_replaces_a_higher_one() -> None:
    store = RecordStore(bytes(32), 100, 8, 64, 32)
    assert store.put(parse_record(peer(5)), "s", NOW, 3600) is StoreOutcome.STORED
    assert store.put(parse_record(peer(4)), "s", NOW, 3600) is StoreOutcome.STALE
    assert store.put(parse_record(peer(5)), "s", NOW, 3600) is StoreOutcome.SAME
    other_five = sign_record(identity(1), PEER, 5, NOW + 601, peer_fields(ADDRS))
    assert store.put(parse_record(other_five), "s", NOW, 3600) is StoreOutcome.STALE
    assert store.put(parse_record(peer(6)), "s", NOW, 3600) is StoreOutcome.STORED
    assert store.get(peer_key(identity(1).public_key), NOW)[0].seq == 6


def test_expired_and_too_long_records_are_refused_and_expiry_is_never_extended() -> None:
    store = RecordStore(bytes(32), 100, 8, 64, 32)
    assert store.put(parse_record(peer(1, expires=NOW - 1)), "s", NOW, 3600) is StoreOutcome.EXPIRED
    assert store.put(parse_record(peer(1, expires=NOW + 10**6)), "s", NOW, 3600) is (
        StoreOutcome.TOO_LONG
    )
    store.put(parse_record(peer(2)), "s", NOW, 3600)
    assert store.expire(NOW + 601) == 1 and store.count == 0


def test_quotas_per_source_and_the_global_limit_evict_the_furthest_key() -> None:
    store = RecordStore(bytes(32), 5, 8, 3, 32)
    outcomes = [store.put(parse_record(peer(1, who=w)), "same-subnet", NOW, 3600) for w in range(5)]
    assert outcomes.count(StoreOutcome.SOURCE_QUOTA) == 2
    for who in range(10, 20):
        store.put(parse_record(peer(1, who=who)), f"s{who}", NOW, 3600)
    assert store.count == 5
    held = [r.key for r in store.records()]
    rest = [parse_record(peer(1, who=w)).key for w in range(10, 20)]
    # Whatever was kept is at least as close to us as whatever was dropped.
    dropped = [k for k in rest if k not in held]
    assert max(int.from_bytes(k, "big") for k in held) <= max(
        int.from_bytes(k, "big") for k in dropped
    )


def test_the_puzzle() -> None:
    seed = grind_seed(6, random.Random(1).randbytes)
    key = NodeIdentity.from_seed(seed).public_key
    assert satisfies(key, 6) and satisfies(key, 0)
    assert leading_zero_bits(b"\x00\x01") == 15
    with pytest.raises(ValueError, match="difficulty"):
        grind_seed(99, random.Random(1).randbytes)


@given(st.binary(max_size=900))
def test_junk_is_never_a_record(data: bytes) -> None:
    with pytest.raises(RecordError):
        parse_record(data)
