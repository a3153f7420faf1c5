"""The CFS's saved leases: round trip, atomic writes, and every bad file refused whole.

Bad input (the file is input from disk): truncated, garbage, oversized, edited (a forged
lease, a provider swapped, a slot added), another node's file, and records that do not fit
their lease. A real restart with the volume protocol: a lease granted by the real
`ProviderCore`, saved, adopted by a fresh `RmsVolumeSource`, renewed and released.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import os
import random
import stat
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from cfs.grantrecord import RecordError, client_lease, grant_record
from cfs.lease import Lease, VolumeError
from cfs.leasefile import MAX_BYTES, LeaseFileError, SavedPool, SavedSlot, decode, encode, mac_key
from cfs.leasestore import LeaseStore, fingerprint, keep_saved, resume, usable
from cfs.rmssource import RmsVolumeSource
from tests.unit.cfs_support import device, lease
from tests.unit.test_cfs_service import make as service_make
from tests.unit.test_cfs_volumes import SIZE, make
from tests.unit.volumes_support import CLIENT, NOW

KEY = mac_key(b"s" * 32)


def pool(**first: Any) -> SavedPool:
    slots = [SavedSlot(lease(n), device(n), {"n": n}) for n in range(8)]
    slots[0] = dataclasses.replace(slots[0], **first)
    return SavedPool("cfs", tuple(slots))


def same(a: Lease, b: Lease) -> bool:
    return repr(a) == repr(b) and a.target == b.target and a.tunnel == b.tunnel


def test_round_trip_keeps_every_field_including_a_replacement() -> None:
    saved = pool(replacement=lease(9), replacement_device=device(9), replacement_state={"r": 1})
    back = decode(encode(saved, KEY), KEY)
    assert back.pool == "cfs" and len(back.slots) == 8
    for a, b in zip(saved.leases(), back.leases(), strict=True):
        assert same(a, b) and a.provider == b.provider and a.expires_at == b.expires_at
    assert back.slots[0].replacement_device == device(9)
    assert back.slots[0].replacement_state == {"r": 1} and back.slots[3].state == {"n": 3}


def edited(data: bytes, change: Any) -> bytes:
    """The file with its body changed by change(body) and the old mac kept."""
    outer = json.loads(data)
    body = json.loads(outer["body"])
    change(body)
    outer["body"] = json.dumps(body)
    return json.dumps(outer).encode()


def swap_provider(body: dict[str, Any]) -> None:
    body["slots"][1]["lease"]["provider"][0] = "ab" * 32


def add_slot(body: dict[str, Any]) -> None:
    body["slots"].append(body["slots"][0])


def longer_lease(body: dict[str, Any]) -> None:
    body["slots"][2]["lease"]["expires_at"] = 1e12


@pytest.mark.parametrize("change", [swap_provider, add_slot, longer_lease])
def test_an_edited_file_is_refused_by_its_mac(change: Any) -> None:
    with pytest.raises(LeaseFileError, match="mac does not match"):
        decode(edited(encode(pool(), KEY), change), KEY)


def test_another_nodes_file_is_refused() -> None:
    with pytest.raises(LeaseFileError, match="another node"):
        decode(encode(pool(), mac_key(b"o" * 32)), KEY)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff garbage",
        b"[]",
        b'{"body": 1, "mac": 2}',
        b'{"body": "x"}',
        b"[" * 100_000,
    ],
)
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(LeaseFileError):
        decode(data, KEY)


def test_a_file_cut_short_is_refused() -> None:
    data = encode(pool(), KEY)
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(LeaseFileError, match="not JSON"):
            decode(data[:cut], KEY)


def test_an_oversized_file_is_refused_before_parsing() -> None:
    with pytest.raises(LeaseFileError, match="over"):
        decode(b" " * (MAX_BYTES + 1), KEY)
    with pytest.raises(LeaseFileError, match="over"):
        encode(pool(state={"x": "y" * MAX_BYTES}), KEY)


def signed(body: dict[str, Any]) -> bytes:
    """A body with a valid mac (as if the node itself had written nonsense)."""
    text = json.dumps(body)
    return json.dumps(
        {"body": text, "mac": hmac.new(KEY, text.encode(), hashlib.sha256).hexdigest()}
    ).encode()


def body_of(saved: SavedPool) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.loads(encode(saved, KEY))["body"])
    return body


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda b: b.update(version=2), "version"),
        (lambda b: b["slots"].pop(), "8 slots"),
        (lambda b: b["slots"][1].update(lease=b["slots"][0]["lease"]), "twice"),
        (lambda b: b["slots"][1].update(device=b["slots"][0]["device"]), "twice"),
        (lambda b: b["slots"][0]["lease"]["provider"].__setitem__(0, "zz"), "64 hex"),
        (lambda b: b["slots"][0]["lease"]["provider"].__setitem__(4, float("nan")), "0..1"),
        (lambda b: b["slots"][0]["lease"].update(size=-1), "integer"),
        (lambda b: b["slots"][0]["lease"].update(expires_at="soon"), "could not convert"),
        (lambda b: b["slots"][0]["lease"]["target"].__setitem__(1, "iqn\nx"), "name"),
        (lambda b: b["slots"][0]["lease"]["tunnel"].update(key="00"), "unusable"),
        (lambda b: b["slots"][0].update(device="relative/disk"), "absolute"),
        (lambda b: b["slots"][0].update(state=["not", "a", "dict"]), "object"),
        (lambda b: b["slots"][0].update(state={"x": "y" * 9000}), "object"),
        (lambda b: b["slots"][0].pop("lease"), "unusable"),
    ],
)
def test_a_well_signed_but_malformed_entry_is_refused_whole(change: Any, why: str) -> None:
    body = body_of(pool())
    change(body)
    with pytest.raises(LeaseFileError, match=why):
        decode(signed(body), KEY)


def test_store_writes_atomically_mode_0600_and_reads_back(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path / "state" / "leases.json", KEY)
    assert store.load() is None
    store.save(pool())
    store.save(pool(device="/run/cfs/other/disk"))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert [p.name for p in store.path.parent.iterdir()] == ["leases.json"]  # no temp left
    loaded = store.load()
    assert loaded is not None and loaded.slots[0].device == "/run/cfs/other/disk"


def test_store_sets_a_bad_file_aside(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path / "leases.json", KEY)
    store.path.write_bytes(encode(pool(), KEY)[:100])
    with pytest.raises(LeaseFileError):
        store.load()
    aside = store.set_aside()
    assert aside.exists() and store.load() is None


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path / "leases.json", KEY)
    store.save(pool())
    with pytest.raises(LeaseFileError):
        store.save(pool(state={"x": "y" * MAX_BYTES}))
    assert store.load() is not None
    assert sorted(os.listdir(tmp_path)) == ["leases.json"]


def test_usable_needs_five_unexpired_leases_and_fingerprint_follows_expiries() -> None:
    assert usable(pool(), 999.0) and not usable(pool(), 1000.0)
    later = pool(lease=lease(0, expires_at=2000.0))
    assert fingerprint(pool()) != fingerprint(later) and fingerprint(None) == ()


async def granted() -> tuple[Lease, dict[str, Any]]:
    source, _, _ = make()
    (candidate,) = await source.offers(SIZE)
    got = await source.obtain(candidate, SIZE)
    return got, source.record(got)


async def test_a_restarted_source_renews_and_releases_a_saved_lease() -> None:
    source, control, wire = make()
    (candidate,) = await source.offers(SIZE)
    got = await source.obtain(candidate, SIZE)
    saved = decode(encode(pool(lease=got, state=source.record(got)), KEY), KEY).slots[0]
    again = RmsVolumeSource(
        CLIENT, control, location=b"l" * 16, network=b"n" * 16,  # type: ignore[arg-type]
        exchange=wire, clock=lambda: NOW, rng=random.Random(99),
    )  # fmt: skip
    again.adopt(saved.lease, saved.state)  # a new CFS process, the same provider
    renewed = await again.renew(saved.lease)
    assert renewed.expires_at >= got.expires_at and renewed.lease_id == got.lease_id
    await again.release(saved.lease)
    assert again.core.leases == {}


async def test_a_forged_record_is_refused() -> None:
    got, record = await granted()
    source, _, _ = make()
    other = dict(record, provider="11" * 32)
    with pytest.raises(VolumeError, match="another provider"):
        source.adopt(got, other)
    with pytest.raises(VolumeError, match="malformed"):
        source.adopt(got, {"provider": 5})
    with pytest.raises(VolumeError, match="unusable"):
        source.adopt(got, dict(record, terms="AAAA"))
    moved = dataclasses.replace(got, target=dataclasses.replace(got.target, iqn="iqn.x:y"))
    with pytest.raises(RecordError, match="target"):
        client_lease(record, moved)
    assert source.core.leases == {}


async def test_grant_record_round_trip_is_the_same_client_lease() -> None:
    source, _, _ = make()
    (candidate,) = await source.offers(SIZE)
    got = await source.obtain(candidate, SIZE)
    held = source.core.leases[bytes.fromhex(got.lease_id)]
    back = client_lease(json.loads(json.dumps(grant_record(held))), got)
    assert (back.volume_id, back.offer, back.claim_id, back.size) == (
        held.volume_id, held.offer, held.claim_id, held.size,
    )  # fmt: skip
    assert back.secrets == held.secrets


class Keeper:
    """Records a lease by its id; refuses to record the ones in `unknown`."""

    def __init__(self) -> None:
        self.unknown: set[str] = set()

    def record(self, lease: Lease) -> dict[str, Any]:
        if lease.lease_id in self.unknown:
            raise VolumeError(f"lease {lease.lease_id} is not held by this CFS")
        return {"id": lease.lease_id}

    def adopt(self, lease: Lease, record: dict[str, Any]) -> None:
        if record != {"id": lease.lease_id}:
            raise VolumeError("not ours")


async def test_keep_saved_writes_on_change_and_on_stop_and_survives_a_bad_record(
    tmp_path: Path,
) -> None:
    cfs, _, _, _, _ = service_make()
    await cfs.build()
    assert cfs.healer is not None
    store, keeper, stop = LeaseStore(tmp_path / "leases.json", KEY), Keeper(), asyncio.Event()
    task = asyncio.create_task(keep_saved(cfs, store, keeper, stop, 0.01))
    await asyncio.sleep(0.05)
    first = store.path.stat().st_mtime_ns
    await asyncio.sleep(0.05)
    assert store.path.stat().st_mtime_ns == first  # nothing changed: not written again
    keeper.unknown.add(cfs.healer.slots[0].lease.lease_id)
    with capture_logs() as logs:
        await asyncio.sleep(0.05)
    assert any(e["event"] == "cfs.leases_not_saved" for e in logs)
    keeper.unknown.clear()
    cfs.healer.renewed(cfs.healer.slots[0].lease.renewed(20_000.0), 100.0)
    stop.set()
    await asyncio.wait_for(task, 5)
    loaded = store.load()
    assert loaded is not None and loaded.slots[0].lease.expires_at == 20_000.0
    assert [s.state for s in loaded.slots] == [{"id": s.lease.lease_id} for s in loaded.slots]


async def test_resume_refuses_another_pool_and_too_few_volumes(tmp_path: Path) -> None:
    cfs, src, ini, _, _ = service_make()
    saved = pool()
    with pytest.raises(VolumeError, match="of pool 'other'"):
        await resume(cfs, SavedPool("other", saved.slots), Keeper())
    with pytest.raises(VolumeError, match="not ours"):
        await resume(cfs, saved, Keeper())  # records of another keeper: forged
    ours = SavedPool(
        "cfs", tuple(dataclasses.replace(s, state={"id": s.lease.lease_id}) for s in saved.slots)
    )
    src.dead |= {s.lease.provider.provider for s in ours.slots[:4]}
    with pytest.raises(VolumeError, match="only 4 of 8 saved volumes answer"):
        await resume(cfs, ours, Keeper())
    assert cfs.healer is None and not ini.attached
