"""The Volume Provider's parts that need no tgtd or WireGuard: config, the volume store,
the RMS link's parsing, and the claim server facing garbage on real loopback sockets."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from ipaddress import IPv6Address
from pathlib import Path
from typing import cast

import pytest

from rms.net.framing import encode_frame
from rms.volumes import Lease, OfferTerms, RequestTerms
from tests.unit.volumes_support import PROVIDER, pair
from volume_provider.cli import main
from volume_provider.config import ConfigError, parse_config
from volume_provider.export import Exporter, interface_name, link_config
from volume_provider.rmslink import (
    RmsLink,
    contributed_bytes,
    management_addresses,
    offer_body,
    parse_request,
)
from volume_provider.server import ClaimServer
from volume_provider.service import ProviderService
from volume_provider.store import StoreError, VolumeStore

TERMS = base64.b64encode(RequestTerms(8, b"l" * 16, b"n" * 16).pack()).decode()
ITEM = {
    "seq": 1,
    "handle": "ab" * 32,
    "requester": "cd" * 32,
    "request_id": "ef" * 16,
    "kind": "storage",
    "amount": 64 * 2**20,
    "exclude_locations": [str(uuid.UUID(int=1))],
    "exclude_networks": [],
    "terms": TERMS,
}


# -- config ---------------------------------------------------------------------------------


def test_the_defaults_are_a_working_config() -> None:
    config = parse_config({})
    assert config.provider.port == 7950 and config.tgt.portal == "[::1]:3260"
    assert config.provider.location_uuid == parse_config({}).provider.location_uuid


def test_names_become_the_uuids_the_rms_derives() -> None:
    named = parse_config({"provider": {"location": "Lyon", "network": "AS64500"}}).provider
    assert named.location_uuid != named.network_uuid
    text = str(named.location_uuid)
    assert parse_config({"provider": {"location": text}}).provider.location_uuid.hex == (
        named.location_uuid.hex
    )


@pytest.mark.parametrize(
    "raw",
    [
        {"provider": {"capacity_mib": -1}},
        {"provider": {"port": 0}},
        {"provider": {"wg_port_first": 65535, "wg_port_count": 2}},
        {"provider": {"lease_s": 1}},
        {"provider": {"listen": ["10.0.0.1"]}},
        {"provider": {"reliability": 1001}},
        {"provider": {"nonsense": 1}},
        {"tgt": {"portal": "::1:3260"}},
        {"tgt": {"control_port": 70000}},
        {"tgt": {"control_port": 32768}},  # tgtd refuses it
        {"elsewhere": {}},
    ],
)
def test_bad_configs_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse_config(raw)


# -- the volume store -----------------------------------------------------------------------


def test_volumes_are_sparse_and_wiping_leaves_nothing(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "v")
    store.prepare()
    assert (tmp_path / "v").stat().st_mode & 0o777 == 0o700
    vid = bytes(range(16))
    path = store.create(vid, 64 * 2**20)
    assert path.stat().st_size == 64 * 2**20 and path.stat().st_blocks * 512 < 2**20
    with path.open("r+b") as f:
        f.seek(2**20)
        f.write(b"secret data" * 1000)
    assert store.allocated() > 0 and store.volumes() == [vid.hex()]
    with pytest.raises(StoreError, match="exists"):
        store.create(vid, 1)
    assert store.wipe(vid) and not path.exists() and not store.wipe(vid)
    again = store.create(vid, 64 * 2**20)
    with again.open("rb") as f:
        f.seek(2**20)
        assert f.read(11000) == bytes(11000)


def test_leftovers_are_wiped_and_other_files_kept(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path)
    for n in range(3):
        store.create(bytes([n]) * 16, 4096)
    (tmp_path / "notes.txt").write_text("kept")
    assert store.wipe_all() == 3 and os.listdir(tmp_path) == ["notes.txt"]


def test_a_bad_volume_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        VolumeStore(tmp_path).path(b"../../etc")


# -- the RMS link ---------------------------------------------------------------------------


def test_a_poll_item_becomes_a_storage_request() -> None:
    request = parse_request(ITEM)
    assert request is not None and request.size == 64 * 2**20
    assert request.terms.count == 8 and request.exclude_locations == (uuid.UUID(int=1).bytes,)


@pytest.mark.parametrize(
    "change",
    [
        {"terms": "!!!"},
        {"terms": base64.b64encode(b"\x01\x02").decode()},
        {"requester": "zz"},
        {"requester": "ab"},
        {"request_id": "ab" * 17},
        {"kind": "cpu"},
        {"amount": "5"},
        {"amount": 0},
        {"exclude_locations": ["not a uuid"]},
        {"exclude_networks": 5},
    ],
)
def test_malformed_poll_items_are_skipped(change: dict[str, object]) -> None:
    assert parse_request({**ITEM, **change}) is None
    assert parse_request({k: v for k, v in ITEM.items() if k != "terms"}) is None


def test_offers_and_addresses_for_the_rms() -> None:
    terms = OfferTerms(b"o" * 16, 5, 1, b"l" * 16, b"n" * 16, 7950, 10, 10, 60, 1)
    body = offer_body("ab", terms, [IPv6Address("fd00::1")] * 6)
    assert len(body["addresses"]) == 4 and OfferTerms.unpack(base64.b64decode(body["terms"]))
    status = {"vpns": [{"address": "fd00::2"}, {"address": "junk"}, {}, {"address": "fd00::1"}]}
    assert management_addresses(status) == [IPv6Address("fd00::1"), IPv6Address("fd00::2")]
    assert management_addresses({"vpns": "x"}) == []
    contribution = {"entitlement": {"contribution": {"storage_bytes": 5 * 2**30}}}
    assert contributed_bytes(contribution) == 5 * 2**30
    for junk in (
        {},
        {"entitlement": "x"},
        {"entitlement": {"contribution": {"storage_bytes": -1}}},
    ):
        assert contributed_bytes(junk) is None


def test_the_nested_link_admits_only_the_client() -> None:
    lease = next(iter(_granted().values()))
    config = link_config(lease)
    assert config.name == interface_name(lease.volume_id) and len(config.name) == 15
    (peer,) = config.peers
    assert [str(n) for n in peer.allowed_ips] == [f"{lease.secrets.client_address}/128"]
    assert peer.preshared_key == lease.secrets.wg_psk and config.listen_port == lease.wg_port


def _granted() -> dict[bytes, Lease]:
    p = pair()
    p.lease()
    return dict(p.provider.leases)


# -- the claim server -----------------------------------------------------------------------


async def _exchange(port: int, data: bytes, *, close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("::1", port)
    writer.write(data)
    await writer.drain()
    if close:
        writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()


async def test_the_server_answers_frames_and_survives_garbage(
    unused_tcp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("volume_provider.server.READ_TIMEOUT_S", 0.3)
    seen: list[bytes] = []

    async def handle(frame: bytes) -> bytes | None:
        seen.append(frame)
        return b"reply:" + frame if frame != b"silent" else None

    server = ClaimServer(handle, unused_tcp_port)
    await server.set_addresses([IPv6Address("::1")])
    try:
        assert await _exchange(unused_tcp_port, encode_frame(b"hello")) == encode_frame(
            b"reply:hello"
        )
        assert await _exchange(unused_tcp_port, b"GET / HTTP/1.1\r\n\r\n") == b""
        assert await _exchange(unused_tcp_port, b"\x00\x00") == b""
        assert await _exchange(unused_tcp_port, b"\x00\x00\x00\x10abc", close=False) == b""
        assert await _exchange(unused_tcp_port, encode_frame(b"silent")) == b""
        assert await _exchange(unused_tcp_port, os.urandom(9000)) == b""
        assert await _exchange(unused_tcp_port, encode_frame(b"again")) == encode_frame(
            b"reply:again"
        )
        counts = server.status()["connections"]
        assert counts == {
            "answered": 2,
            "no_reply": 1,
            "oversized": 2,
            "timeout": 1,
            "truncated": 1,
        }
        assert seen == [b"hello", b"silent", b"again"]
    finally:
        await server.close()


# -- the command line -------------------------------------------------------------------------


def test_the_command_line_refuses_misuse_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rms.servicecli.configure_logging", lambda *args: None)
    assert main([]) == 2
    assert main(["run", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[provider]\ncapacity_mib = -5\n")
    assert main(["run", "--config", str(bad)]) == 2
    assert "capacity_mib" in capsys.readouterr().err
    keyless = tmp_path / "keyless.toml"
    keyless.write_text(f'[rms]\nstate_dir = "{tmp_path / "no-state"}"\n[log]\nformat = "json"\n')
    assert main(["run", "--config", str(keyless)]) == 1
    assert "node.key" in capsys.readouterr().err


def test_the_capacity_follows_the_nodes_contribution_unless_configured() -> None:
    unused = (cast(Exporter, None), cast(RmsLink, None))  # the step touches neither
    following = ProviderService(parse_config({}), PROVIDER, *unused)
    assert following.core.settings.capacity == 0
    following._follow_contribution(5 * 2**30)
    assert following.core.settings.capacity == 5 * 2**30
    following._follow_contribution(None)
    assert following.core.settings.capacity == 5 * 2**30
    fixed = parse_config({"provider": {"capacity_mib": 100}})
    configured = ProviderService(fixed, PROVIDER, *unused)
    configured._follow_contribution(5 * 2**30)
    assert configured.core.settings.capacity == 100 * 2**20
