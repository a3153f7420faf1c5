"""Saved memberships: round trip, and every kind of bad file moved aside, never trusted."""

from __future__ import annotations

import ipaddress
import uuid
from pathlib import Path

import msgpack

from rms.discovery.record import found
from rms.identity import NodeIdentity
from rms.membership.issuer import found_roster
from rms.policy import DEFAULT
from rms.vpn.store import MembershipStore, SavedGuardian, SavedVpn, encode
from rms.wg.keys import WgPrivateKey
from rms.wire.messages.roster import Endpoint

NOW = 1_800_000_000.0


def saved(guardian: bool = True, signer: int = 1) -> SavedVpn:
    me = NodeIdentity.from_seed(bytes([signer]) * 32)
    charter = found(me, bytes(16))
    roster = found_roster(
        me,
        charter.vpn_id,
        wg_public_key=WgPrivateKey.generate().public_key(),
        location=uuid.UUID(int=1),
        network=uuid.UUID(int=2),
        now=NOW,
        endpoint=Endpoint(ipaddress.ip_address("198.18.0.11"), 51820),
    )
    duty = SavedGuardian(charter, WgPrivateKey.generate(), WgPrivateKey.generate())
    return SavedVpn(
        2, WgPrivateKey.generate(), frozenset({me.public_key}), roster, duty if guardian else None
    )


def test_round_trip_keeps_everything_and_the_file_is_private(tmp_path: Path) -> None:
    store = MembershipStore(tmp_path / "vpns", DEFAULT)
    original = saved()
    store.save(original)
    assert store.path(original.vpn_id).stat().st_mode & 0o777 == 0o600
    (loaded,) = store.load_all()
    assert loaded == original
    store.forget(original.vpn_id)
    assert list(store.load_all()) == []


def bad_files(tmp_path: Path) -> dict[str, bytes]:
    good = saved()
    body = msgpack.unpackb(encode(good))
    forged = dict(body, trusted=[bytes(32)])  # the roster's signer is not trusted any more
    wrong_slot = dict(body, slot=9)
    return {
        "garbage": b"\xff\x00 not msgpack",
        "not-a-map": msgpack.packb([1, 2, 3]),
        "other-format": msgpack.packb(dict(body, format=99)),
        "forged-trust": msgpack.packb(forged),
        "bad-slot": msgpack.packb(wrong_slot),
        "truncated": encode(good)[:40],
        "huge": b"\x00" * (300 * 1024),
        "wrong-name": encode(good),
    }


def test_unusable_files_are_moved_aside_and_never_raise(tmp_path: Path) -> None:
    store = MembershipStore(tmp_path / "vpns", DEFAULT)
    store.directory.mkdir()
    files = bad_files(tmp_path)
    for name, data in files.items():
        (store.directory / f"{name}.msgpack").write_bytes(data)
    good = saved(signer=3)
    store.save(good)
    assert [s.vpn_id for s in store.load_all()] == [good.vpn_id]
    aside = sorted(p.name for p in store.directory.glob("*.bad"))
    assert aside == sorted(f"{name}.msgpack.bad" for name in files)


def test_a_member_file_has_no_guardian_part(tmp_path: Path) -> None:
    store = MembershipStore(tmp_path, DEFAULT)
    member = saved(guardian=False)
    store.save(member)
    (loaded,) = store.load_all()
    assert loaded.guardian is None and loaded.wg_key == member.wg_key
