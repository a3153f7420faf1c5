"""Leases survive a provider restart: the lease file round trip, bad files and records, and
what the core takes back (docs/volumes.md, "Restarts")."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import msgpack
import pytest

from rms.volumes import Granted, ProviderCore, Released, Renewed
from rms.volumes.records import pack_leases, unpack_leases
from tests.unit.volumes_support import MIB, NOW, PROVIDER, pair, settings
from volume_provider.leasefile import MAX_FILE_BYTES, LeaseFile

KEY = PROVIDER.public_key


def test_leases_round_trip_through_the_file(tmp_path: Path) -> None:
    p = pair()
    p.lease()
    lease = next(iter(p.provider.leases.values()))
    lease.renewal = (b"r" * 16, lease.expires_ms)
    file = LeaseFile(tmp_path / "sub" / "leases.bin")
    file.save(list(p.provider.leases.values()))
    assert (tmp_path / "sub" / "leases.bin").stat().st_mode & 0o777 == 0o600
    (back,) = file.load()
    assert back.volume_id == lease.volume_id and back.client == lease.client
    assert back.secrets == lease.secrets and back.box == lease.box
    assert back.wg_private.raw == lease.wg_private.raw and back.renewal == lease.renewal
    assert back.client_endpoint == lease.client_endpoint and back.expires_ms == lease.expires_ms


def test_a_restarted_provider_keeps_serving_its_clients() -> None:
    p = pair()
    claim_id, claim = p.claim(p.offer())
    p.provider.handle(claim, NOW)  # granted, but the reply is lost; then the provider restarts
    saved = unpack_leases(pack_leases(list(p.provider.leases.values())))
    assert saved is not None and saved[1] == 0
    restarted = ProviderCore(PROVIDER, settings(), random.Random(7))
    (kept,) = restarted.restore(saved[0], NOW + 10)
    assert restarted.used == 64 * MIB and not kept.exported
    again = restarted.handle(p.client.claim_again(claim_id, NOW + 11), NOW + 11)
    assert again.event == "granted_again"
    granted = p.client.receive(again.reply or b"", KEY, NOW + 11)
    assert isinstance(granted, Granted) and granted.lease.volume_id == kept.volume_id
    vid = kept.volume_id
    renewed = restarted.handle(p.client.renew(vid, NOW + 12), NOW + 12)
    assert isinstance(p.client.receive(renewed.reply or b"", KEY, NOW + 12), Renewed)
    out = restarted.handle(p.client.release(vid, NOW + 13), NOW + 13)
    assert isinstance(p.client.receive(out.reply or b"", KEY, NOW + 13), Released)


def test_what_the_core_does_not_take_back() -> None:
    p = pair(capacity=256 * MIB)
    for n in range(3):
        p.lease(64 * MIB, NOW + n, bytes([n]) * 16)
    leases = list(p.provider.leases.values())
    expired = replace(leases[0], expires_ms=int(NOW * 1000))
    twin = replace(leases[1], volume_id=b"t" * 16)  # same port as leases[1]
    core = ProviderCore(PROVIDER, settings(), random.Random(8))
    kept = core.restore([expired, leases[1], twin, leases[2]], NOW + 5)
    assert [k.volume_id for k in kept] == [leases[2].volume_id, leases[1].volume_id]
    assert core.used == 128 * MIB  # the expired one and the port twin are not taken back
    # A capacity not known yet (0) or lowered since: granted leases are kept all the same.
    unknown = ProviderCore(PROVIDER, settings(capacity=0), random.Random(8))
    assert len(unknown.restore(leases, NOW)) == 3 and unknown.free == 0
    small = ProviderCore(PROVIDER, settings(wg_port_first=60000), random.Random(9))
    assert small.restore(leases, NOW) == []  # ports outside its range


@pytest.mark.parametrize(
    "content",
    [b"", b"\xc1\xc1", b"not msgpack at all", msgpack.packb([1, 2]), msgpack.packb({"format": 9})],
)
def test_a_file_that_is_no_lease_file_is_put_aside(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "leases.bin"
    path.write_bytes(content)
    assert LeaseFile(path).load() == []
    assert not path.exists() and (tmp_path / "leases.bin.bad").read_bytes() == content


def test_an_oversized_file_is_put_aside(tmp_path: Path) -> None:
    path = tmp_path / "leases.bin"
    path.write_bytes(b"\x00" * (MAX_FILE_BYTES + 1))
    assert LeaseFile(path).load() == [] and (tmp_path / "leases.bin.bad").exists()


def test_bad_records_are_dropped_and_good_ones_kept(tmp_path: Path) -> None:
    p = pair()
    p.lease()
    good = msgpack.unpackb(pack_leases(list(p.provider.leases.values())))["leases"][0]
    bad = [
        {**good, "size": 0},
        {**good, "wg_port": "x"},
        {**good, "secrets": {"iqn": "x"}},
        {**good, "client_endpoint": b"short"},
        "not a map",
        {**good, "secrets": {**good["secrets"], "portal": b"\x00" * 3}},
    ]
    data = msgpack.packb({"format": 1, "leases": [good, *bad]})
    result = unpack_leases(data)
    assert result is not None
    leases, dropped = result
    assert len(leases) == 1 and dropped == len(bad)


def test_a_missing_file_means_no_leases(tmp_path: Path) -> None:
    assert LeaseFile(tmp_path / "absent").load() == []
