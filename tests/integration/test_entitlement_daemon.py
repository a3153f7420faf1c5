"""Entitlement in the real daemon: status section, control API routes, policy document."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rms import policydoc
from rms.control.client import ControlClient, ControlError
from rms.identity import NodeIdentity
from tests.integration.conftest import RunningDaemon, daemon_env, launch, stop_daemon

GIB = 2**30
KEYS = [NodeIdentity.from_seed(bytes([i]) * 32) for i in (3, 4)]


def start(tmp_path: Path, policy: bytes | None = None) -> RunningDaemon:
    base = tmp_path / "node"
    base.mkdir()
    env = daemon_env(base / "state", base / "run" / "control.sock", base / "notify")
    env.update(
        RMS_CONTRIBUTION_STORAGE="20 GiB",
        RMS_CONTRIBUTION_CPU="2",
        RMS_POLICY_KEYS=",".join(k.public_key.hex() for k in KEYS),
        RMS_POLICY_THRESHOLD="2",
    )
    if policy is not None:
        (base / "state").mkdir(mode=0o700)
        (base / "state" / "policy.json").write_bytes(policy)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(base / "notify"))
    return launch(env, listener)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RunningDaemon]:
    d = start(tmp_path)
    try:
        yield d
    finally:
        stop_daemon(d)


def call(d: RunningDaemon, method: str, route: str, body: Any = None) -> dict[str, Any]:
    client = ControlClient(d.socket_path)
    if method == "GET":
        return asyncio.run(client.get_json(route))
    return asyncio.run(client.post_json(route, body))


def signed(version: int, **fields: Any) -> bytes:
    return policydoc.signed_document(fields, version, "t", list(KEYS))


def test_status_json_has_the_entitlement_object(node: RunningDaemon) -> None:
    status = json.loads(node.rms("status", "--json").stdout)
    e = status["entitlement"]
    assert e["contribution"]["storage_bytes"] == 20 * GIB
    assert e["contribution"]["cpu_millicores"] == 2000
    assert e["availability"] == 1.0
    assert e["probation"]["active"] is True
    assert e["entitlement"] == {"storage_bytes": 4 * GIB, "cpu_millicores": 400}


def test_status_table_shows_contribution_availability_and_entitlement(node: RunningDaemon) -> None:
    out = node.rms("status").stdout
    assert "ENTITLEMENT" in out
    assert "contribution  20.0 GiB storage" in out
    assert "availability  100.00 %" in out
    assert "entitlement   4.0 GiB storage, 0.4 cores CPU" in out
    assert "probation" in out


def test_preview_then_change_the_contribution(node: RunningDaemon) -> None:
    preview = call(node, "POST", "/v1/entitlement/preview", {"storage_bytes": 40 * GIB})
    assert preview["entitlement"]["storage_bytes"] == 8 * GIB
    assert call(node, "GET", "/v1/entitlement")["entitlement"]["storage_bytes"] == 4 * GIB
    changed = call(node, "POST", "/v1/contribution", {"storage_bytes": 40 * GIB})
    assert changed["entitlement"]["storage_bytes"] == 8 * GIB
    assert changed["contribution"]["source"] == "changed"


def test_the_provider_feeds_its_measurement(node: RunningDaemon) -> None:
    body = {"capacity_bytes": 30 * GIB, "leased_bytes": 10 * GIB, "audited_bytes": 5 * GIB}
    got = call(node, "POST", "/v1/contribution/measured", body)
    assert got["contribution"]["verified_storage_bytes"] == 15 * GIB
    shown = node.rms("status")
    assert "30.0 GiB room, 10.0 GiB leased" in shown.stdout


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/contribution", {}),
        ("/v1/contribution", {"storage_bytes": -1}),
        ("/v1/contribution", {"storage_bytes": 2**63}),
        ("/v1/contribution", {"storage_bytes": 1.5}),
        ("/v1/contribution", {"storage_bytes": True}),
        ("/v1/contribution", {"private_key": 1}),
        ("/v1/contribution", [1, 2]),
        ("/v1/entitlement/preview", {"storage_bytes": "20 GiB"}),
        ("/v1/contribution/measured", {"leased_bytes": 1}),
        ("/v1/contribution/measured", {"capacity_bytes": -1, "leased_bytes": 0}),
        ("/v1/contribution/measured", {"capacity_bytes": 9, "leased_bytes": 1, "audited_bytes": 2}),
        ("/v1/contribution", {"storage_bytes": 1, "pad": "x" * 5000}),
    ],
)
def test_bad_bodies_are_refused_and_change_nothing(
    node: RunningDaemon, route: str, body: Any
) -> None:
    with pytest.raises(ControlError, match=r"(400|413)"):
        call(node, "POST", route, body)
    assert call(node, "GET", "/v1/entitlement")["contribution"]["storage_bytes"] == 20 * GIB


def test_a_signed_policy_document_is_applied(tmp_path: Path) -> None:
    d = start(tmp_path, signed(7, probation_factor=1.0))
    try:
        got = call(d, "GET", "/v1/policy")
        assert got["version"] == 7 and got["values"]["probation_factor"] == 1.0
        assert call(d, "GET", "/v1/entitlement")["entitlement"]["storage_bytes"] == 8 * GIB
        assert d.rms("status").returncode == 0
    finally:
        stop_daemon(d)


def test_a_forged_policy_document_is_refused_and_reported(tmp_path: Path) -> None:
    doc = json.loads(signed(7))
    doc["policy"]["entitlement_ratio"] = 0.5
    d = start(tmp_path, json.dumps(doc).encode())
    try:
        status = d.rms("status", "--json")
        assert status.returncode == 1
        report = json.loads(status.stdout)
        assert report["state"] == "degraded"
        assert any("forged or altered" in p for p in report["problems"])
        assert report["entitlement"]["ratio"] == 0.4
    finally:
        stop_daemon(d)


def test_rms_contribute_previews_then_applies(node: RunningDaemon) -> None:
    shown = node.rms("contribute", "30 GiB", "--socket", str(node.socket_path))
    assert shown.returncode == 0, shown.stderr
    assert "4.0 GiB now, 6.0 GiB with 30.0 GiB" in shown.stdout and "not applied" in shown.stdout
    assert call(node, "GET", "/v1/entitlement")["contribution"]["storage_bytes"] == 20 * GIB
    done = node.rms(
        "contribute", "30 GiB", "--cpu", "4", "--yes", "--socket", str(node.socket_path)
    )
    assert done.returncode == 0 and "applied" in done.stdout
    c = call(node, "GET", "/v1/entitlement")["contribution"]
    assert (c["storage_bytes"], c["cpu_millicores"]) == (30 * GIB, 4000)
    assert node.rms("contribute", "lots", "--socket", str(node.socket_path)).returncode == 2
