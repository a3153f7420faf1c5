"""The TrueNAS target backend against a local middleware (JSON-RPC 2.0 over TLS WebSocket).

The server (tests/unit/truenas_middleware.py) keeps state and validates like TrueNAS; these
tests drive `TargetManager` over `TrueNasDriver` and check what the middleware ends up
holding, then feed the client malformed, oversized, replayed, forged and hostile replies:
each is a clear `TargetError` without a secret in it, and the next call works again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from rms.tomlconfig import ConfigError
from tests.unit.truenas_middleware import BASENAME, Middleware, start, tls_files
from volume_provider.target.changes import (
    AllowInitiator,
    BindAccount,
    CreateTarget,
    DenyInitiator,
    UnbindAccount,
)
from volume_provider.target.driver import TargetManager
from volume_provider.target.model import ChapSecret, LunState, Portal, TargetConfig, TargetError
from volume_provider.target.truenas import TrueNasDriver
from volume_provider.target.truenas_rpc import ApiKey, Endpoint, MiddlewareClient, load_settings

API_KEY = "1-" + "k" * 62
SECRET = "tc-secret-0042"  # 14 characters: TrueNAS takes 12-16
PARENT = "tank/truecloud"
IQN = f"{BASENAME}:vol-1"


@dataclass
class Rig:
    mw: Middleware
    client: MiddlewareClient
    driver: TrueNasDriver
    manager: TargetManager
    url: str
    ca: Path


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    mw = Middleware(API_KEY)
    runner: web.AppRunner
    runner, url, ca = await start(mw, tmp_path)
    client = MiddlewareClient(Endpoint(url, ApiKey(API_KEY), ca), timeout_s=1.0)
    driver = TrueNasDriver(client, PARENT)
    try:
        yield Rig(mw, client, driver, TargetManager(driver), url, ca)
    finally:
        await client.close()
        await runner.cleanup()


def cfg(
    user: str = "tc-u1",
    addr: str = "10.77.0.2",
    secret: str = SECRET,
    iqn: str = IQN,
    backing: str = f"{PARENT}/vol-1",
    size: int = 64 << 20,
) -> TargetConfig:
    return TargetConfig(
        iqn, 1, backing, size, user, ChapSecret(secret), addr, Portal("10.77.0.1", 3260),
        initiator_iqn="iqn.2024-01.cloud.true:client",
    )  # fmt: skip


async def test_a_volume_is_zvol_auth_group_target_extent_and_lun(rig: Rig) -> None:
    assert await rig.manager.ensure_target(cfg()) == [CreateTarget(cfg())]
    mw = rig.mw
    zvol = mw.datasets[f"{PARENT}/vol-1"]
    assert (zvol["type"], zvol["sparse"], zvol["volsize"]["parsed"]) == ("VOLUME", True, 64 << 20)
    (auth,) = mw.table("auth").values()
    assert (auth["user"], auth["secret"]) == ("tc-u1", SECRET)
    (group,) = mw.table("initiator").values()
    assert group["initiators"] == ["iqn.2024-01.cloud.true:client"]
    (portal,) = mw.table("portal").values()
    assert portal["listen"] == [{"ip": "10.77.0.1"}]
    (target,) = mw.table("target").values()
    assert target["name"] == "vol-1" and target["auth_networks"] == ["10.77.0.2/32"]
    assert target["groups"] == [
        {
            "portal": portal["id"],
            "initiator": group["id"],
            "authmethod": "CHAP",
            "auth": auth["tag"],
        }
    ]
    (extent,) = mw.table("extent").values()
    assert (extent["type"], extent["disk"]) == ("DISK", f"zvol/{PARENT}/vol-1")
    (mapping,) = mw.table("targetextent").values()
    assert (mapping["target"], mapping["extent"], mapping["lunid"]) == (
        target["id"], extent["id"], 1,
    )  # fmt: skip
    (state,) = await rig.manager.targets()
    assert (state.iqn, state.tid, state.accounts, state.acl) == (
        IQN, target["id"], ("tc-u1",), ("10.77.0.2",),
    )  # fmt: skip
    assert state.luns == (LunState(1, f"{PARENT}/vol-1", 64, 512),)
    assert state.sessions == ()
    assert await rig.manager.ensure_target(cfg()) == []  # idempotent
    mw.sessions.append({"initiator": "iqn.2024-01.cloud.true:client", "target": IQN,
                        "initiator_addr": "10.77.0.2"})  # fmt: skip
    (state,) = await rig.manager.targets()
    assert state.sessions == ("10.77.0.2",)


async def test_drift_is_repaired_in_place_and_removal_leaves_only_the_zvol(rig: Rig) -> None:
    await rig.manager.ensure_target(cfg())
    tid = next(iter(rig.mw.table("target")))
    changes = await rig.manager.ensure_target(cfg(user="tc-u2", addr="10.77.0.9"))
    assert changes == [
        AllowInitiator(tid, "10.77.0.9"),
        DenyInitiator(tid, "10.77.0.2"),
        BindAccount(tid, "tc-u2", ChapSecret(SECRET)),
        UnbindAccount(tid, "tc-u1"),
    ]
    (state,) = await rig.manager.targets()
    assert (state.accounts, state.acl) == (("tc-u2",), ("10.77.0.9",))
    assert [a["user"] for a in rig.mw.table("auth").values()] == ["tc-u2"]
    await rig.manager.remove_target(IQN)
    for table in ("target", "extent", "targetextent", "auth", "initiator", "portal"):
        assert rig.mw.table(table) == {}, table
    assert list(rig.mw.datasets) == [f"{PARENT}/vol-1"]  # data kept until release
    await rig.driver.destroy_backing(f"{PARENT}/vol-1")
    assert rig.mw.datasets == {}


async def test_the_owners_own_targets_and_portals_are_never_touched(rig: Rig) -> None:
    mw = rig.mw
    portal = mw.insert("portal", {"listen": [{"ip": "0.0.0.0"}], "comment": "owner"})
    mw.insert("target", {"name": "backup", "alias": "nightly backup", "mode": "ISCSI",
                         "groups": [], "auth_networks": []})  # fmt: skip
    await rig.manager.ensure_target(cfg())
    ours = next(t for t in mw.table("target").values() if t["name"] == "vol-1")
    assert ours["groups"][0]["portal"] == portal["id"]  # the wildcard portal is reused
    assert [t.iqn for t in await rig.manager.targets()] == [IQN]
    await rig.manager.reconcile([])
    assert [t["name"] for t in mw.table("target").values()] == ["backup"]
    assert list(mw.table("portal")) == [portal["id"]]


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (cfg(secret="s" * 20), "12-16 characters"),
        (cfg(iqn="iqn.2024-01.other:vol-1"), "base name|NAME"),
        (cfg(iqn=f"{BASENAME}:Upper"), "lower-case"),
        (cfg(backing="tank/elsewhere/vol-1"), "not under tank/truecloud"),
    ],
)
async def test_configs_truenas_cannot_serve_are_refused_before_any_change(
    rig: Rig, config: TargetConfig, reason: str
) -> None:
    with pytest.raises(TargetError, match=reason) as e:
        await rig.manager.ensure_target(config)
    assert config.chap_secret.reveal() not in str(e.value)
    assert not any(c.endswith((".create", ".update", ".delete")) for c in rig.mw.calls)


async def test_a_zvol_of_another_size_and_a_wrong_port_are_refused(rig: Rig) -> None:
    rig.mw.m_pool_dataset_create({"name": f"{PARENT}/vol-1", "type": "VOLUME", "volsize": 1 << 20})
    with pytest.raises(TargetError, match="another size"):
        await rig.manager.ensure_target(cfg())
    rig.mw.listen_port = 3261
    with pytest.raises(TargetError, match="port 3261"):
        await rig.manager.ensure_target(cfg(backing=f"{PARENT}/vol-2"))
    assert rig.mw.table("target") == {}


async def test_a_failed_export_is_rolled_back_and_the_reason_shown(rig: Rig) -> None:
    rig.mw.insert("extent", {"name": "vol-1", "type": "DISK", "disk": "zvol/tank/x", "comment": ""})
    with pytest.raises(TargetError, match="Extent name must be unique"):
        await rig.manager.ensure_target(cfg())
    assert rig.mw.table("target") == {} and rig.mw.table("initiator") == {}
    assert rig.mw.table("targetextent") == {}


async def test_a_wrong_api_key_is_refused_without_showing_it(rig: Rig) -> None:
    bad = "1-" + "z" * 62
    client = MiddlewareClient(Endpoint(rig.url, ApiKey(bad), rig.ca), timeout_s=1.0)
    try:
        with pytest.raises(TargetError, match="refused the API key") as e:
            await TrueNasDriver(client, PARENT).targets()
        assert bad not in str(e.value) and bad not in repr(client.endpoint)
    finally:
        await client.close()


async def test_plain_ws_and_an_untrusted_certificate_are_refused(rig: Rig, tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="wss://"):
        Endpoint(rig.url.replace("wss://", "ws://"), ApiKey(API_KEY))
    _, untrusted = tls_files(tmp_path / "other")
    client = MiddlewareClient(Endpoint(rig.url, ApiKey(API_KEY), untrusted), timeout_s=1.0)
    try:
        with pytest.raises(TargetError, match="cannot reach TrueNAS") as e:
            await client.call("iscsi.global.config")
        assert API_KEY not in str(e.value)
        assert rig.mw.calls == []  # the key never left
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("garbage", "not JSON"),
        ("array", "not JSON-RPC 2.0"),
        ("not-jsonrpc", "not JSON-RPC 2.0"),
        ("no-result", "no result or error"),
        ("binary", "frame binary"),
        ("huge", "too large"),
        ("close", "connection to TrueNAS lost"),
        ("hang", "did not answer iscsi.target.query within"),
        ("bad-shape", "expected a list of objects"),
    ],
)
async def test_malformed_replies_are_clear_errors_and_the_next_call_works(
    rig: Rig, fault: str, reason: str
) -> None:
    await rig.manager.ensure_target(cfg())
    rig.mw.faults["iscsi.target.query"] = fault
    with pytest.raises(TargetError, match=reason) as e:
        await rig.manager.targets()
    assert API_KEY not in str(e.value)
    assert [t.iqn for t in await rig.manager.targets()] == [IQN]


@pytest.mark.parametrize("fault", ["stale-first", "forged-first", "notify-first"])
async def test_replayed_forged_and_unasked_responses_are_skipped(rig: Rig, fault: str) -> None:
    await rig.manager.ensure_target(cfg())
    rig.mw.faults["iscsi.target.query"] = fault
    before = rig.client.skipped
    assert [t.iqn for t in await rig.manager.targets()] == [IQN]
    assert rig.client.skipped == before + 1


async def test_secrets_never_reach_errors_or_logs(rig: Rig) -> None:
    rig.mw.faults["iscsi.auth.create"] = "echo-secrets"
    with capture_logs() as logs, pytest.raises(TargetError, match="refused") as e:
        await rig.manager.ensure_target(cfg())
    assert SECRET not in str(e.value) and "[secret]" in str(e.value)
    assert SECRET not in repr(logs) and API_KEY not in repr(logs)
    rig.mw.faults["iscsi.global.config"] = "echo-secrets"
    with pytest.raises(TargetError) as e2:
        await rig.client.call("iscsi.global.config", API_KEY)
    assert API_KEY not in str(e2.value)


async def test_an_unknown_method_and_an_api_key_file(rig: Rig, tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="Method not found"):
        await rig.client.call("iscsi.no_such_call")
    key_file = tmp_path / "key"
    key_file.write_text(API_KEY + "\n")
    assert ApiKey.from_file(key_file).reveal() == API_KEY
    key_file.write_bytes(b"\xff\xfe")
    with pytest.raises(TargetError, match="cannot read"):
        ApiKey.from_file(key_file)
    with pytest.raises(TargetError, match="printable"):
        ApiKey("")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[truenas]\nurl = "ws://nas/api/current"\nparent_dataset = "tank/tc"\n', "wss://"),
        ('[truenas]\nurl = "wss://nas/api/current"\n', "parent_dataset is required"),
        ('[truenas]\nparent_dataset = "tank"\n', "POOL/DATASET"),
        ('[truenas]\nparent_dataset = "tank/../etc"\n', "POOL/DATASET"),
        ('[truenas]\nparent_dataset = "tank/tc"\npassword = "x"\n', "unknown key"),
        ("[truenas\n", "not valid TOML"),
    ],
)
def test_truenas_settings_refuse_bad_files(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "truenas.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=reason):
        load_settings(path)


def test_truenas_settings_read_the_key_from_its_file(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(API_KEY + "\n")
    path = tmp_path / "truenas.toml"
    path.write_text(f'[truenas]\napi_key_file = "{key}"\nparent_dataset = "tank/tc"\n')
    endpoint = load_settings(path).endpoint()
    assert endpoint.api_key.reveal() == API_KEY and API_KEY not in repr(endpoint)
    driver = TrueNasDriver.from_settings(path)
    assert driver.parent == "tank/tc" and driver.kind == "truenas"
    key.unlink()
    with pytest.raises(TargetError, match="cannot read the TrueNAS API key file"):
        load_settings(path).endpoint()
