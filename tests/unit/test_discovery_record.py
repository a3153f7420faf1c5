"""The signed VPN record: building, every reject reason, forgeries, and the selection rule."""

from __future__ import annotations

import hashlib
import uuid

import msgpack
import pytest

from rms.discovery import (
    RecordError,
    RecordReason,
    Rejected,
    VpnRecord,
    delegate,
    found,
    latest,
    redelegate,
    sign_record,
    supersedes,
    verify_record,
    vpn_id_of,
)
from rms.discovery.fields import MAX_LIFETIME_MS, RECORD_CONTEXT
from tests.discovery_support import (
    CAPACITY,
    DELEGATION,
    EXPIRES_AT,
    FOUNDER,
    FOUNDER_KEY,
    GUARDIAN,
    GUEST_PORT,
    GUEST_PRIV,
    ISSUED_AT,
    MEMBERS,
    NOW,
    NOW_MS,
    OUTSIDER,
    PUBLIC_IPS,
    SALT,
    SEQ,
    SIGNER,
    SOLICITING,
    VPN_ID,
    altered,
    body,
    charter,
    craft,
    fields_of,
    record,
    resealed,
)


def reason(data: bytes, now: float = NOW) -> RecordReason:
    result = verify_record(data, now)
    assert isinstance(result, Rejected), result
    assert len(result.detail) <= 120
    return result.reason


def test_a_signed_record_verifies_to_itself() -> None:
    rec = record(seq=7)
    assert verify_record(rec.raw, NOW) == rec
    assert rec.vpn_id == charter().vpn_id
    assert rec.seq == 7
    assert rec.issued_at == NOW_MS
    assert rec.expires_at == NOW_MS + 600_000
    assert rec.guardians == (GUARDIAN.public_key,)
    assert rec.body == body()
    assert rec.charter == charter()


def test_seq_defaults_to_the_issue_time_in_ms() -> None:
    rec = sign_record(GUARDIAN, charter(), body(), now=NOW)
    assert rec.seq == NOW_MS


def test_vpn_id_is_the_documented_hash_with_version_8_bits() -> None:
    vpn_id = vpn_id_of(FOUNDER.public_key, SALT)
    digest = hashlib.sha256(b"truecloud-vpn-v1\x00" + FOUNDER.public_key + SALT).digest()
    assert vpn_id.version == 8
    assert vpn_id.variant == uuid.RFC_4122
    assert vpn_id.bytes[:6] == digest[:6]
    assert vpn_id.bytes[9:] == digest[9:16]
    assert vpn_id_of(FOUNDER.public_key, bytes(16)) != vpn_id


def test_the_founder_signs_without_being_listed_as_guardian() -> None:
    rec = record(signer=FOUNDER)
    assert isinstance(verify_record(rec.raw, NOW), VpnRecord)


def test_the_guest_private_key_never_shows_in_repr() -> None:
    rec = record()
    assert rec.guest_private_key.raw.hex() not in repr(rec)
    assert repr(rec.raw) not in repr(rec)


def test_found_refuses_a_short_salt() -> None:
    with pytest.raises(RecordError, match="16 bytes"):
        found(FOUNDER, b"short")


def test_sign_record_refuses_to_sign_as_an_outsider() -> None:
    with pytest.raises(RecordError, match="not_guardian"):
        record(signer=OUTSIDER)


def test_sign_record_refuses_a_bad_body() -> None:
    with pytest.raises(RecordError, match="bad_field"):
        record(members=9, capacity=8)
    with pytest.raises(RecordError):
        record(now=float("nan"))


# --- forgeries -------------------------------------------------------------------------


def test_a_non_guardian_signing_properly_is_refused() -> None:
    forged = resealed(record(), SIGNER, OUTSIDER.public_key, OUTSIDER)
    assert reason(forged) is RecordReason.NOT_GUARDIAN


def test_a_signature_by_someone_else_than_the_named_signer_is_refused() -> None:
    # The guardian is named as signer, but the founder's key made the signature.
    forged = resealed(record(), SIGNER, GUARDIAN.public_key, FOUNDER)
    assert reason(forged) is RecordReason.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("position", "value"),
    [
        (PUBLIC_IPS, ["203.0.113.66"]),
        (GUEST_PORT, 4444),
        (GUEST_PRIV, bytes(32)),
        (SOLICITING, False),
        (MEMBERS, 4),
        (SEQ, 10**12),
        (EXPIRES_AT, NOW_MS + 3_600_000),
    ],
)
def test_an_altered_field_breaks_the_signature(position: int, value: object) -> None:
    assert reason(altered(record(), position, value)) is RecordReason.BAD_SIGNATURE


def test_a_vpn_id_that_is_not_the_founders_is_refused() -> None:
    other = uuid.uuid4().bytes
    assert reason(resealed(record(), VPN_ID, other, GUARDIAN)) is RecordReason.VPN_ID_MISMATCH


def test_claiming_someone_elses_vpn_with_ones_own_key_is_refused() -> None:
    # The outsider keeps the victim's VPN id and salt but names itself founder.
    rec = record()
    fields = fields_of(rec)
    fields[FOUNDER_KEY] = OUTSIDER.public_key
    fields[SIGNER] = OUTSIDER.public_key
    assert reason(craft(fields, OUTSIDER)) is RecordReason.VPN_ID_MISMATCH


def test_a_delegation_not_signed_by_the_founder_is_refused() -> None:
    rec = record()
    forged = delegate(OUTSIDER, rec.vpn_id, [OUTSIDER.public_key], 2)
    fields = fields_of(rec)
    fields[DELEGATION] = [forged.version, list(forged.guardians), forged.signature]
    fields[SIGNER] = OUTSIDER.public_key
    assert reason(craft(fields, OUTSIDER)) is RecordReason.BAD_DELEGATION


def test_a_delegation_with_an_added_guardian_is_refused() -> None:
    rec = record()
    fields = fields_of(rec)
    fields[DELEGATION][1].append(OUTSIDER.public_key)
    fields[SIGNER] = OUTSIDER.public_key
    assert reason(craft(fields, OUTSIDER)) is RecordReason.BAD_DELEGATION


def test_a_delegation_from_another_vpn_of_the_same_founder_is_refused() -> None:
    mine, other = record(), record(vpn=charter(salt=bytes(16)))
    fields = fields_of(mine)
    fields[DELEGATION] = fields_of(other)[DELEGATION]
    assert reason(craft(fields, GUARDIAN)) is RecordReason.BAD_DELEGATION


def test_every_single_bit_flip_is_refused() -> None:
    raw = record().raw
    for i in range(len(raw) * 8):
        flipped = bytearray(raw)
        flipped[i // 8] ^= 1 << (i % 8)
        assert isinstance(verify_record(bytes(flipped), NOW), Rejected), i


# --- time --------------------------------------------------------------------------------


def test_expiry_and_the_future_window() -> None:
    rec = record()
    assert reason(rec.raw, NOW + 600) is RecordReason.EXPIRED
    assert isinstance(verify_record(rec.raw, NOW + 599.999), VpnRecord)
    assert isinstance(verify_record(rec.raw, NOW - 60), VpnRecord)
    assert reason(rec.raw, NOW - 60.001) is RecordReason.FUTURE
    assert isinstance(verify_record(rec.raw, NOW - 100, max_skew_s=100), VpnRecord)


def test_lifetime_must_be_positive_and_at_most_a_day() -> None:
    rec = record(signer=GUARDIAN)
    too_long = resealed(rec, EXPIRES_AT, NOW_MS + MAX_LIFETIME_MS + 1, GUARDIAN)
    assert reason(too_long) is RecordReason.BAD_FIELD
    backwards = resealed(rec, ISSUED_AT, NOW_MS + 600_000, GUARDIAN)
    assert reason(backwards) is RecordReason.BAD_FIELD


# --- shape -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "value"),
    [
        (PUBLIC_IPS, []),
        (PUBLIC_IPS, [f"198.18.0.{i}" for i in range(1, 10)]),
        (PUBLIC_IPS, ["198.18.0.5", "198.18.0.5"]),
        (PUBLIC_IPS, ["not an ip"]),
        (PUBLIC_IPS, ["2001:DB8::5"]),
        (PUBLIC_IPS, ["127.0.0.1"]),
        (PUBLIC_IPS, ["0.0.0.0"]),
        (PUBLIC_IPS, ["ff02::1"]),
        (PUBLIC_IPS, ["fe80::1"]),
        (PUBLIC_IPS, [b"198.18.0.5"]),
        (GUEST_PORT, 0),
        (GUEST_PORT, 65536),
        (GUEST_PORT, True),
        (GUEST_PRIV, bytes(31)),
        (SOLICITING, 1),
        (MEMBERS, 9),
        (MEMBERS, -1),
        (CAPACITY, 0),
        (SEQ, -1),
        (SALT_FIELD := 3, bytes(15)),
        (DELEGATION, [1, [], b"x" * 63]),
        (DELEGATION, [1, [b"k" * 32] * 2, b"x" * 64]),
        (DELEGATION, [1, [bytes([i]) * 32 for i in range(9)], b"x" * 64]),
        (DELEGATION, [1, []]),
        (SIGNER, bytes(33)),
    ],
)
def test_fields_out_of_shape_are_refused(position: int, value: object) -> None:
    assert reason(resealed(record(), position, value, GUARDIAN)) is RecordReason.BAD_FIELD


def test_structural_rejects() -> None:
    rec = record()
    payload = rec.raw[64:]
    assert reason(b"x" * 2049) is RecordReason.OVERSIZED
    assert reason(rec.raw[:64]) is RecordReason.MALFORMED
    assert reason(rec.raw[:-1]) is RecordReason.MALFORMED
    assert reason(rec.raw + b"\x00") is RecordReason.MALFORMED
    assert reason(rec.raw[:64] + msgpack.packb({"a": 1})) is RecordReason.MALFORMED
    assert reason(rec.raw[:64] + msgpack.packb([1, 2, 3])) is RecordReason.MALFORMED
    assert reason(rec.raw[:64] + msgpack.packb([2, 2, 3])) is RecordReason.UNKNOWN_VERSION
    assert reason(rec.raw[:64] + b"\xc1" + payload) is RecordReason.MALFORMED


def test_a_non_canonical_encoding_is_refused() -> None:
    # The same array of 16 with a 32-bit length, or with the version as a 64-bit integer.
    payload = record().raw[64:]
    assert payload[:4] == b"\xdc\x00\x10\x01"
    long_header = b"\xdd\x00\x00\x00\x10" + payload[3:]
    wide_int = payload[:3] + b"\xcf" + (1).to_bytes(8, "big") + payload[4:]
    for variant in (long_header, wide_int):
        assert msgpack.unpackb(variant) == msgpack.unpackb(payload)
        assert reason(craft_raw(variant)) is RecordReason.NON_CANONICAL


def craft_raw(payload: bytes) -> bytes:
    return GUARDIAN.sign(RECORD_CONTEXT + payload) + payload


# --- selection -----------------------------------------------------------------------


def test_higher_seq_wins_and_a_tie_keeps_the_first() -> None:
    one, two = record(seq=1), record(seq=2)
    same_seq_other = record(seq=2, members=5)
    assert supersedes(two, one) and not supersedes(one, two)
    assert not supersedes(same_seq_other, two)
    assert supersedes(one, None)
    assert latest([one, two, same_seq_other])[one.vpn_id] == two
    assert latest([same_seq_other, two, one])[one.vpn_id] == same_seq_other


def test_a_newer_delegation_outranks_a_higher_seq_under_an_older_one() -> None:
    old = record(seq=10**12, vpn=charter(version=1))
    new = record(seq=5, vpn=charter(version=2))
    assert supersedes(new, old) and not supersedes(old, new)


def test_records_of_different_vpns_are_never_compared() -> None:
    with pytest.raises(ValueError, match="different VPNs"):
        supersedes(record(), record(vpn=charter(salt=bytes(16))))
    both = latest([record(), record(vpn=charter(salt=bytes(16)))])
    assert len(both) == 2


def test_the_founder_adds_a_guardian_and_the_new_delegation_outranks_the_old() -> None:
    first = charter()
    second = redelegate(FOUNDER, first, [GUARDIAN.public_key, OUTSIDER.public_key])
    assert second.vpn_id == first.vpn_id
    assert second.delegation.version == first.delegation.version + 1
    by_newcomer = record(seq=1, signer=OUTSIDER, vpn=second)
    by_old_charter = record(seq=99, signer=GUARDIAN, vpn=first)
    assert supersedes(by_newcomer, by_old_charter)
    # A guardian dropped from the list cannot outbid the current ones with the old delegation.
    third = redelegate(FOUNDER, second, [OUTSIDER.public_key])
    with pytest.raises(RecordError, match="not_guardian"):
        record(signer=GUARDIAN, vpn=third)
    assert not supersedes(
        record(seq=10**12, signer=GUARDIAN, vpn=second), record(seq=1, signer=OUTSIDER, vpn=third)
    )


def test_only_the_founder_redelegates_and_within_the_limits() -> None:
    with pytest.raises(RecordError, match="only the VPN's founder"):
        redelegate(GUARDIAN, charter(), [GUARDIAN.public_key])
    with pytest.raises(RecordError, match="at most 8"):
        redelegate(FOUNDER, charter(), [bytes([i]) * 32 for i in range(9)])
    with pytest.raises(RecordError, match="32 bytes"):
        redelegate(FOUNDER, charter(), [b"short"])
