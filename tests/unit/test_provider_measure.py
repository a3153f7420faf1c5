"""What the Volume Provider reports to its RMS as its measured contribution: the room it
really has (configured or followed capacity, no more than its volume files hold plus the free
space of their file system) and the bytes leased."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from tests.unit.volumes_support import PROVIDER
from volume_provider.config import parse_config
from volume_provider.export import Exporter
from volume_provider.rmslink import RmsLink, measured_body
from volume_provider.service import ProviderService
from volume_provider.store import VolumeStore

GIB = 2**30
MIB = 2**20


@pytest.mark.parametrize(
    ("capacity", "leased", "allocated", "free", "room"),
    [
        (2 * GIB, 0, 0, 100 * GIB, 2 * GIB),  # plenty of disk: the configured capacity
        (2 * GIB, 0, 0, GIB, GIB),  # a fuller disk than the owner thinks: what is free
        (2 * GIB, GIB, GIB // 2, GIB // 4, GIB // 2 + GIB // 4),  # written + free room
        (0, 0, 0, 100 * GIB, 0),  # nothing offered
        (2 * GIB, 0, 0, 0, 0),  # a full disk
        (2 * GIB, 0, -5, -5, 0),  # nonsense from below never goes negative
    ],
)
def test_the_capacity_reported_is_what_the_disk_can_really_hold(
    capacity: int, leased: int, allocated: int, free: int, room: int
) -> None:
    body = measured_body(capacity, leased, allocated, free)
    assert body == {"capacity_bytes": room, "leased_bytes": leased, "audited_bytes": None}


def provider(tmp_path: Path, capacity_mib: int) -> ProviderService:
    store = VolumeStore(tmp_path / "volumes")
    store.prepare()
    exporter = cast(Exporter, SimpleNamespace(store=store))
    config = parse_config({"provider": {"capacity_mib": capacity_mib}})
    return ProviderService(config, PROVIDER, exporter, cast(RmsLink, None))


def test_the_provider_measures_its_store(tmp_path: Path) -> None:
    service = provider(tmp_path, 64)
    volume = service.exporter.store.create(b"v" * 16, 16 * MIB)
    with volume.open("r+b") as f:  # 1 MiB written into the sparse file
        f.write(b"x" * MIB)
        f.flush()
        os.fsync(f.fileno())
    fs = os.statvfs(tmp_path)
    measured = service.measurement()
    assert measured is not None
    expected = min(64 * MIB, service.exporter.store.allocated() + fs.f_bavail * fs.f_frsize)
    assert abs(cast(int, measured["capacity_bytes"]) - expected) <= 16 * MIB  # disk moves
    assert measured["leased_bytes"] == 0 and measured["audited_bytes"] is None


def test_a_following_provider_reports_nothing_before_it_knows_the_offer(tmp_path: Path) -> None:
    service = provider(tmp_path, 0)
    assert service.measurement() is None  # capacity 0 now would zero the node's entitlement
    service._follow_contribution(GIB)
    measured = service.measurement()
    assert measured is not None and 0 < cast(int, measured["capacity_bytes"]) <= GIB


def test_an_unreadable_store_is_not_reported(tmp_path: Path) -> None:
    service = provider(tmp_path, 64)
    service.exporter.store.data_dir = tmp_path / "gone"
    assert service.measurement() is None
