"""`[target] backend`: the Volume Provider's choice of iSCSI target, its config checks, and
the TrueNAS backend's zvol volumes against the local middleware stand-in (JSON-RPC 2.0 over a
TLS WebSocket, tests/unit/truenas_middleware.py)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
import structlog
from aiohttp import web

from rms.volumes import ClientCore, Granted, Offer, ProviderCore
from rms.volumes.terms import IQN_PREFIX, OfferTerms
from rms.wg.manager import WireGuard
from tests.unit.truenas_middleware import BASENAME, Middleware, start
from tests.unit.volumes_support import (
    CLIENT,
    CLIENT_ADDRESS,
    NOW,
    PROVIDER,
    PROVIDER_ADDRESS,
    WG_KEY,
    request,
)
from volume_provider.cli import main
from volume_provider.config import (
    ConfigError,
    ProviderConfig,
    lease_naming,
    load_config,
    parse_config,
)
from volume_provider.export import Exporter
from volume_provider.service import settings_from
from volume_provider.store import StoreError, VolumeStore
from volume_provider.target.backends import (
    LIO_REFUSED,
    Backend,
    TargetPortals,
    ZvolVolumes,
    open_backend,
)
from volume_provider.target.driver import TargetManager
from volume_provider.target.model import ChapSecret, Portal, TargetConfig, TargetError
from volume_provider.target.truenas import TrueNasDriver

API_KEY = "1-" + "k" * 62
PARENT = "tank/truecloud"
VID = bytes(range(16))
OTHER = bytes(range(16, 32))


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()  # `volume-provider run` set up logging on capsys's stream


# -- config ---------------------------------------------------------------------------------


def test_the_default_backend_is_tgt() -> None:
    config = parse_config({})
    assert (config.target.backend, config.truenas.parent_dataset) == ("tgt", "")


def test_the_truenas_backend_with_its_settings() -> None:
    config = parse_config(
        {
            "target": {"backend": "truenas"},
            "truenas": {
                "url": "wss://nas.example/api/current",
                "api_key_file": "/run/secrets/k",
                "ca_file": "/etc/ssl/nas.pem",
                "parent_dataset": "tank/truecloud",
            },
        }
    )
    assert config.target.backend == "truenas"
    assert (config.truenas.url, str(config.truenas.api_key_file)) == (
        "wss://nas.example/api/current",
        "/run/secrets/k",
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"target": {"backend": "iet"}}, 'target.backend must be one of "tgt", "lio", "truenas"'),
        ({"target": {"backend": "TGT"}}, "target.backend must be one of"),
        ({"target": {"backend": ""}}, "target.backend must be one of"),
        ({"target": {"backend": "x" * 100_000}}, "longer than 4096 characters"),
        ({"target": {"backend": 1}}, "target.backend must be a string"),
        ({"target": {"backend": ["tgt"]}}, "target.backend must be a string"),
        ({"target": {"driver": "tgt"}}, "unknown key(s) in [target]: driver"),
        ({"target": "tgt"}, "[target] must be a table"),
        ({"target": {"backend": "truenas"}}, "truenas.parent_dataset is required"),
        ({"truenas": {"url": "ws://nas/api/current"}}, "truenas.url must start with wss://"),
        ({"truenas": {"url": "https://nas/api"}}, "truenas.url must start with wss://"),
        ({"truenas": {"parent_dataset": "tank"}}, "POOL/DATASET"),
        ({"truenas": {"parent_dataset": "tank/../etc"}}, "POOL/DATASET"),
        ({"truenas": {"parent_dataset": "tank//x"}}, "POOL/DATASET"),
        ({"truenas": {"api_key": "1-abc"}}, "unknown key(s) in [truenas]: api_key"),
    ],
)
def test_bad_backend_settings_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert message in str(caught.value)


def test_a_bad_file_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "volume-provider.toml"
    path.write_text('[target]\nbackend = "truenas"\n')
    with pytest.raises(ConfigError, match=f"{path}: truenas.parent_dataset is required"):
        load_config(path)


def test_volume_provider_run_refuses_a_bad_backend_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "volume-provider.toml"
    path.write_text('[target]\nbackend = "scst"\n')
    assert main(["run", "--config", str(path)]) == 2
    assert "target.backend must be one of" in capsys.readouterr().err


# -- open_backend -----------------------------------------------------------------------------


@dataclass
class Nas:
    mw: Middleware
    url: str
    ca: Path
    key_file: Path

    def config(self, **truenas: str) -> ProviderConfig:
        section = {"url": self.url, "api_key_file": str(self.key_file), "ca_file": str(self.ca)}
        section |= {"parent_dataset": PARENT, **truenas}
        provider = {"capacity_mib": 256}
        raw = {"provider": provider, "target": {"backend": "truenas"}, "truenas": section}
        return parse_config(raw)


@pytest.fixture
async def nas(tmp_path: Path) -> AsyncIterator[Nas]:
    mw = Middleware(API_KEY)
    runner: web.AppRunner
    runner, url, ca = await start(mw, tmp_path)
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY + "\n")
    key_file.chmod(0o400)
    try:
        yield Nas(mw, url, ca, key_file)
    finally:
        await runner.cleanup()


def store(tmp_path: Path) -> VolumeStore:
    return VolumeStore(tmp_path / "volumes")


async def test_truenas_is_chosen_and_logged_in_at_start(nas: Nas, tmp_path: Path) -> None:
    async with open_backend(nas.config(), store(tmp_path)) as backend:
        assert backend.kind == "truenas" and backend.watch is None
        assert isinstance(backend.driver, TrueNasDriver)
        assert isinstance(backend.volumes, ZvolVolumes)
        assert isinstance(backend.portals, TargetPortals)
        assert await backend.portals.strays() == []
    assert nas.mw.calls[:2] == ["auth.login_with_api_key", "iscsi.global.config"]


async def test_lio_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    config = parse_config({"target": {"backend": "lio"}})
    with pytest.raises(TargetError, match="initiator IQN"):
        async with open_backend(config, store(tmp_path)):
            pass
    assert 'use "tgt"' in LIO_REFUSED
    assert not (tmp_path / "volumes").exists()


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("1-" + "w" * 62, "TrueNAS refused the API key"),
        ("", "1-1024 printable characters"),
        ("x" * 5000, "is over 4096 bytes"),
        (None, "cannot read the TrueNAS API key file"),
        (b"\xff\xfe\x00", "cannot read the TrueNAS API key file"),
    ],
)
async def test_a_bad_api_key_stops_the_start_without_showing_it(
    nas: Nas, tmp_path: Path, key: str | bytes | None, message: str
) -> None:
    nas.key_file.chmod(0o600)
    if key is None:
        nas.key_file.unlink()
    elif isinstance(key, bytes):
        nas.key_file.write_bytes(key)
    else:
        nas.key_file.write_text(key)
    with pytest.raises(TargetError) as caught:
        async with open_backend(nas.config(), store(tmp_path)):
            pass
    assert message in str(caught.value)
    assert "w" * 20 not in str(caught.value) and API_KEY not in str(caught.value)


async def test_an_untrusted_certificate_stops_the_start(nas: Nas, tmp_path: Path) -> None:
    config = nas.config(ca_file="")  # the system store does not know the test CA
    with pytest.raises(TargetError):
        async with open_backend(config, store(tmp_path)):
            pass
    assert nas.mw.calls == []


def test_volume_provider_run_with_a_refused_key_exits_1(
    nas: Nas, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The stand-in runs in this test's loop; `run` makes its own, so point it at a dead port.
    path = tmp_path / "volume-provider.toml"
    path.write_text(
        f'[provider]\ndata_dir = "{tmp_path / "volumes"}"\n'
        f'[rms]\nstate_dir = "{tmp_path / "rms"}"\n'
        '[target]\nbackend = "truenas"\n'
        f'[truenas]\nurl = "wss://127.0.0.1:9/api/current"\napi_key_file = "{nas.key_file}"\n'
        f'parent_dataset = "{PARENT}"\n'
        f'[tgt]\nlog_dir = "{tmp_path / "log"}"\n'
    )
    assert main(["run", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "volume-provider:" in err and API_KEY not in err


# -- zvol volumes ------------------------------------------------------------------------------


@pytest.fixture
async def zvols(nas: Nas, tmp_path: Path) -> AsyncIterator[tuple[Backend, Middleware]]:
    async with open_backend(nas.config(), store(tmp_path)) as backend:
        yield backend, nas.mw


async def test_a_volume_is_a_sparse_zvol_named_by_its_id(
    zvols: tuple[Backend, Middleware],
) -> None:
    backend, mw = zvols
    volumes = backend.volumes
    assert volumes.backing(VID) == f"{PARENT}/{VID.hex()}"
    await volumes.create(VID, 64 << 20)
    zvol = mw.datasets[f"{PARENT}/{VID.hex()}"]
    assert (zvol["type"], zvol["sparse"], zvol["volsize"]["parsed"]) == ("VOLUME", True, 64 << 20)
    await volumes.check(VID, 64 << 20)
    with pytest.raises(StoreError, match="not 1048576"):
        await volumes.check(VID, 1 << 20)
    with pytest.raises(StoreError, match="exists already"):
        await volumes.create(VID, 64 << 20)
    with pytest.raises(StoreError, match="is gone"):
        await volumes.check(OTHER, 64 << 20)
    with pytest.raises(StoreError, match="16 bytes"):
        volumes.backing(b"../../x")


async def test_the_exporters_target_is_served_from_the_zvol_and_wiped_with_it(
    zvols: tuple[Backend, Middleware],
) -> None:
    backend, mw = zvols
    volumes, manager = backend.volumes, TargetManager(backend.driver)
    await volumes.create(VID, 64 << 20)
    config = TargetConfig(
        f"{BASENAME}:{VID.hex()}", 1, volumes.backing(VID), 64 << 20, "c0001",
        ChapSecret("s" * 16), "fd00::2", Portal("fd00::1", 3260),
    )  # fmt: skip
    await backend.portals.add_portal(config.portal)
    await manager.ensure_target(config)
    (extent,) = mw.table("extent").values()
    assert extent["disk"] == f"zvol/{PARENT}/{VID.hex()}"
    await manager.remove_target(config.iqn)
    await backend.portals.remove_portal(config.portal)
    assert f"{PARENT}/{VID.hex()}" in mw.datasets  # a suspended volume keeps its data
    await volumes.wipe(VID)
    assert f"{PARENT}/{VID.hex()}" not in mw.datasets
    await volumes.wipe(VID)  # gone already: fine


async def test_leftovers_are_wiped_but_kept_leases_and_the_owners_zvols_stay(
    zvols: tuple[Backend, Middleware],
) -> None:
    backend, mw = zvols
    for vid in (VID, OTHER):
        await backend.volumes.create(vid, 16 << 20)
    owners = {f"{PARENT}/photos", "tank/vm-disk", f"{PARENT}/{VID.hex()}x"}
    for name in owners:
        mw.m_pool_dataset_create({"name": name, "type": "VOLUME", "volsize": 1 << 20})
    assert await backend.volumes.wipe_all({VID}) == 1
    assert set(mw.datasets) == owners | {f"{PARENT}/{VID.hex()}"}


async def test_a_zvol_in_use_by_someone_elses_extent_is_a_store_error(
    zvols: tuple[Backend, Middleware],
) -> None:
    backend, mw = zvols
    await backend.volumes.create(VID, 16 << 20)
    mw.insert("extent", {"name": "x", "type": "DISK", "disk": f"zvol/{PARENT}/{VID.hex()}"})
    with pytest.raises(StoreError, match="cannot delete zvol"):
        await backend.volumes.wipe(VID)
    with pytest.raises(StoreError, match="leftover zvols"):
        await backend.volumes.wipe_all(())


# -- a lease of a TrueNAS provider fits TrueNAS ------------------------------------------------


def test_lease_naming_follows_the_backend() -> None:
    assert lease_naming(parse_config({})) == (IQN_PREFIX, 24)
    truenas = parse_config(
        {"target": {"backend": "truenas"}, "truenas": {"parent_dataset": PARENT}}
    )
    assert lease_naming(truenas) == (BASENAME, 16)
    with pytest.raises(ConfigError, match=r"truenas\.basename must be an iqn\. name"):
        parse_config({"truenas": {"basename": "iqn.bad base"}})


async def test_another_base_name_on_the_box_stops_the_start(nas: Nas, tmp_path: Path) -> None:
    config = nas.config(basename="iqn.2024-01.example.nas")
    with pytest.raises(TargetError, match=r"set truenas\.basename to TrueNAS's"):
        async with open_backend(config, store(tmp_path)):
            pass


async def test_a_granted_lease_exports_on_truenas_as_granted(nas: Nas, tmp_path: Path) -> None:
    config = nas.config()
    core = ProviderCore(PROVIDER, settings_from(config, (PROVIDER_ADDRESS,)), random.Random(7))
    client = ClientCore(CLIENT, random.Random(8))
    terms = core.consider(request(), NOW)
    assert isinstance(terms, OfferTerms)
    offer = Offer.from_answer(PROVIDER.public_key, [PROVIDER_ADDRESS.packed], terms.pack())
    assert offer is not None
    _, claim = client.claim(offer, WG_KEY, 51820, [CLIENT_ADDRESS], NOW)
    outcome = core.handle(claim, NOW)
    granted = client.receive(outcome.reply or b"", PROVIDER.public_key, NOW)
    assert isinstance(granted, Granted)  # the client takes TrueNAS's name for its volume
    (lease,) = core.leases.values()
    async with open_backend(config, store(tmp_path)) as backend:
        unused = cast(WireGuard, None)  # target_config touches no link
        exporter = Exporter(store(tmp_path), unused, backend, config.provider.wg_port_first)
        await backend.volumes.create(lease.volume_id, lease.size)
        await exporter.targets.ensure_target(exporter.target_config(lease))
        (state,) = await exporter.targets.targets()
    assert state.iqn == granted.lease.secrets.iqn
    assert state.accounts == (granted.lease.secrets.chap_user,)
    (auth,) = nas.mw.table("auth").values()
    assert auth["secret"] == granted.lease.secrets.chap_secret
