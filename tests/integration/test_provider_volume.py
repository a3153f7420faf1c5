"""A volume end to end with the real provider process, wireguard-go, tgtd and libiscsi (issue 5).

Two namespaces play the provider's and the client's nodes (their veth addresses stand for
management VPN addresses). The provider runs `volume-provider run`; the client side is the
test: `rms.volumes.ClientCore`, a wireguard-go link, and cfs's libiscsi bridge. Checked:
an over-capacity request gets no offer; garbage on the protocol port is survived; a claim
retried after a lost reply gets the same grant; a second client and a forged lease are
refused; CHAP with a wrong secret fails; data written through the nested VPN reads back;
garbage on the iSCSI port is survived; renew; release wipes (the file is gone, the link and
target too, and a new volume reads zeros where the data was); an unrenewed lease expires
and is wiped.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cfs.initiator.driver import InitiatorError, LibiscsiBridge, VolumeTarget
from rms.identity import NodeIdentity
from rms.volumes import (
    ClientCore,
    ClientLease,
    Granted,
    Offer,
    Refused,
    Rejected,
    Released,
    Renewed,
)
from rms.wg.keys import WgPrivateKey
from rms.wire import encode
from rms.wire.messages import volumes as msg
from tests.integration.host_support import needs_root_and
from tests.integration.provider_support import (
    C_ADDR,
    P_ADDR,
    ClientLink,
    RmsSide,
    ask,
    enter,
    exchange_in,
    provider_config,
    provider_process,
    rms_side,
    two_namespaces,
    write_key,
)
from tests.integration.test_storage_iscsi import read_in_thread, write_file
from volume_provider.tgtd import forget_sockets

TOOLS = ("tgtd", "tgtadm", "wireguard-go", "wg", "nsenter", "ip", "fusermount3")
pytestmark = needs_root_and(
    *TOOLS, packages="tgt, wireguard-go, wireguard-tools, iproute2 and fuse3", fuse=True
)
MIB = 1024**2
PORT = 7950
INI_IQN = "iqn.2024-01.cloud.true:provider-test"
PROVIDER_SEED, CLIENT_SEED, EVE_SEED = b"P" * 32, b"C" * 32, b"E" * 32
LEASE_S = 20
CLIENT_WG_PORT = 51820  # inside the client's namespace: no clash with other tests


async def eventually(check: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"not within {within_s} s: {what}"
        await asyncio.sleep(0.2)


async def test_a_volume_from_offer_to_wipe(tmp_path: Path) -> None:
    write_key(tmp_path / "state", PROVIDER_SEED)
    provider = NodeIdentity.from_seed(PROVIDER_SEED)
    client = NodeIdentity.from_seed(CLIENT_SEED)
    control = 31000 + os.getpid() % 800 * 2  # tgtd -C takes at most 32767; clear of others
    log = tmp_path / "provider.log"
    with two_namespaces("a") as (pns, cns):
        async with rms_side(tmp_path, provider, client) as (side, sock):
            config = provider_config(tmp_path, sock, control, LEASE_S)
            s = Scenario(tmp_path, side, pns, cns, ClientCore(client, random.Random(5)))
            try:
                async with provider_process(pns, config, log, sweep=False) as proc:
                    await eventually(lambda: started(log) == 1, 60, "provider up")
                    await s.attach_and_write()
                    proc.kill()  # tgtd and the links stay behind, as after a crash
                async with provider_process(pns, config, log):
                    await eventually(lambda: started(log) == 2, 60, "provider up again")
                    await s.data_survives_the_restart()
                    await s.tgtd_dies_and_the_volume_comes_back(log)
                    await s.renew_release_and_wipe()
                    await new_volume_reads_zeros_then_expires(tmp_path, side, pns, cns, s.core)
            finally:
                await s.detach()
                forget_sockets(control)
    text = log.read_text()
    assert "provider.stopped" in text and "Traceback" not in text
    assert '"restored": 1' in text


def pids_in(ns: str) -> list[int]:
    found = subprocess.run(["ip", "netns", "pids", ns], check=False, capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def started(log: Path) -> int:
    return log.read_text().count('"event": "provider.started"') if log.exists() else 0


@dataclass
class Scenario:
    """The client's side of one volume across a provider restart."""

    tmp: Path
    side: RmsSide
    pns: str
    cns: str
    core: ClientCore
    data: bytes = field(default_factory=lambda: os.urandom(4 * MIB))
    lease: ClientLease | None = None
    link: ClientLink | None = None
    bridge: LibiscsiBridge | None = None
    target: VolumeTarget | None = None

    async def attach_and_write(self) -> None:
        side, cns = self.side, self.cns
        assert await side.offers(side.broadcast(512 * MIB), within_s=3) == []  # over capacity
        (offer,) = await side.offers(side.broadcast(64 * MIB))
        assert offer.terms.size == 64 * MIB and offer.addresses == (P_ADDR,)
        wg_key = WgPrivateKey.generate()
        self.lease = lease = await claim_with_a_lost_reply(self.core, cns, offer, wg_key)
        await second_client_and_forgeries(cns, offer, lease, self.core)
        self.link = ClientLink(cns, "tvc" + lease.volume_id.hex()[:12])
        self.bridge = LibiscsiBridge(self.tmp / "bridges", INI_IQN, enter(cns))
        s = lease.secrets
        self.target = VolumeTarget(
            f"[{s.portal}]:{s.portal_port}", s.iqn, 1, s.chap_user, s.chap_secret
        )
        await self.link.up(self.tmp, wg_key.raw, CLIENT_WG_PORT, s)
        wrong = VolumeTarget(self.target.portal, s.iqn, 1, s.chap_user, "not-the-secret-1234")
        with pytest.raises(InitiatorError, match="Authentication"):
            await self.bridge.attach(wrong)
        disk = await self.bridge.attach(self.target)
        await asyncio.to_thread(write_file, disk, MIB, self.data)
        assert await asyncio.to_thread(read_in_thread, disk, MIB, len(self.data)) == self.data

    async def data_survives_the_restart(self) -> None:
        assert self.bridge is not None and self.target is not None and self.lease is not None
        vid, provider = self.lease.volume_id, self.lease.provider
        renewed = await ask(self.cns, self.core.renew(vid, now()), PORT)  # the lease lives on
        assert isinstance(self.core.receive(renewed, provider, now()), Renewed)
        await self.bridge.detach(self.target)  # its session died with the old export
        backing = self.tmp / "volumes" / f"{vid.hex()}.img"
        on_disk = await asyncio.to_thread(read_in_thread, backing, MIB, len(self.data))
        assert on_disk == self.data, (
            f"on disk, first difference at {_first_diff(on_disk, self.data)}"
        )
        disk = await self.bridge.attach(self.target)
        got = await asyncio.to_thread(read_in_thread, disk, MIB, len(self.data))
        assert got == self.data, f"read back, first difference at {_first_diff(got, self.data)}"
        s = self.lease.secrets
        assert await exchange_in(self.cns, s.portal, s.portal_port, os.urandom(5000)) is None
        with pytest.raises(OSError):  # no iSCSI on the management address
            await exchange_in(self.cns, P_ADDR, s.portal_port, b"x")
        assert await asyncio.to_thread(read_in_thread, disk, MIB, 4096) == self.data[:4096]

    async def tgtd_dies_and_the_volume_comes_back(self, log: Path) -> None:
        assert self.bridge is not None and self.target is not None
        exports = log.read_text().count('"volume.exported"')
        (pid,) = [p for p in pids_in(self.pns) if comm(p) == "tgtd"]
        os.kill(pid, signal.SIGKILL)
        again = lambda: log.read_text().count('"volume.exported"') > exports  # noqa: E731
        await eventually(again, 30, "tgtd started again and the volume exported again")
        assert [p for p in pids_in(self.pns) if comm(p) == "tgtd"] != [pid]
        await self.bridge.detach(self.target)
        disk = await self.bridge.attach(self.target)
        got = await asyncio.to_thread(read_in_thread, disk, MIB, len(self.data))
        assert got == self.data, f"read back, first difference at {_first_diff(got, self.data)}"

    async def renew_release_and_wipe(self) -> None:
        assert self.lease is not None
        lease, core, provider = self.lease, self.core, self.lease.provider
        renewed = core.receive(
            await ask(self.cns, core.renew(lease.volume_id, now()), PORT), provider, now()
        )
        assert isinstance(renewed, Renewed)
        client_id = core.identity.node_id.hex()
        await eventually(lambda: published_clients(self.side) == [client_id], 15, "status")
        await self.detach()
        reply = await ask(self.cns, core.release(lease.volume_id, now()), PORT)
        assert isinstance(core.receive(reply, provider, now()), Released)
        check_wiped(self.tmp, self.pns, lease)

    async def detach(self) -> None:
        if self.bridge is not None and self.target is not None:
            await self.bridge.detach(self.target)
        if self.link is not None:
            await self.link.down()
        self.bridge = self.link = None


async def claim_with_a_lost_reply(
    core: ClientCore, cns: str, offer: Offer, wg_key: WgPrivateKey
) -> ClientLease:
    assert await exchange_in(cns, P_ADDR, PORT, os.urandom(3000)) is None  # garbage: closed
    claim_id, claim = core.claim(offer, wg_key.public_key().raw, CLIENT_WG_PORT, [C_ADDR], now())
    lost = await ask(cns, claim, PORT)  # as if this reply never arrived
    retry = await ask(cns, core.claim_again(claim_id, now()), PORT)
    granted = core.receive(retry, offer.provider, now())
    assert isinstance(granted, Granted)
    late = core.receive(lost, offer.provider, now())
    assert isinstance(late, Granted) and late.lease.volume_id == granted.lease.volume_id
    return granted.lease


async def second_client_and_forgeries(
    cns: str, offer: Offer, lease: ClientLease, core: ClientCore
) -> None:
    eve = NodeIdentity.from_seed(EVE_SEED)
    eve_core = ClientCore(eve, random.Random(6))
    _, eve_claim = eve_core.claim(offer, b"k" * 32, 51820, [C_ADDR], now())
    refused = eve_core.receive(await ask(cns, eve_claim, PORT), offer.provider, now())
    assert isinstance(refused, Refused) and refused.reason == "not_your_offer"
    for kind in (msg.RENEW, msg.RELEASE):
        body: dict[str, object] = {"volume_id": lease.volume_id}
        if kind is msg.RENEW:
            body["renewal_id"] = b"r" * 16
        reply = await ask(cns, encode(eve, kind, body, now()), PORT)
        assert b"not_your_lease" in reply
    forged = {
        "claim_id": lease.claim_id,
        "volume_id": lease.volume_id,
        "client": core.identity.node_id,
        "size": lease.size,
        "expires_ms": lease.expires_ms,
        "box": b"\x00" * 200,
    }
    assert core.receive(encode(eve, msg.GRANT, forged, now()), offer.provider, now()) == (
        Rejected("wrong_signer")
    )


def check_wiped(tmp: Path, pns: str, lease: ClientLease) -> None:
    assert not (tmp / "volumes" / f"{lease.volume_id.hex()}.img").exists()
    argv = ["ip", "-n", pns, "-o", "link"]
    links = subprocess.run(argv, check=False, capture_output=True, text=True)
    names = [line.split(":")[1].strip().split("@")[0] for line in links.stdout.splitlines()]
    assert not [n for n in names if n.startswith("tvp")], names


async def new_volume_reads_zeros_then_expires(
    tmp: Path, side: RmsSide, pns: str, cns: str, core: ClientCore
) -> None:
    (offer,) = await side.offers(side.broadcast(64 * MIB))
    wg_key = WgPrivateKey.generate()
    _, claim = core.claim(offer, wg_key.public_key().raw, 51821, [C_ADDR], now())
    granted = core.receive(await ask(cns, claim, PORT), offer.provider, now())
    assert isinstance(granted, Granted)
    path = tmp / "volumes" / f"{granted.lease.volume_id.hex()}.img"
    assert path.exists()
    with path.open("rb") as f:
        f.seek(MIB)
        assert f.read(4 * MIB) == bytes(4 * MIB)
    await eventually(lambda: not path.exists(), LEASE_S + 15, "an unrenewed lease is wiped")
    check_wiped(tmp, pns, granted.lease)


def published_clients(side: RmsSide) -> list[str]:
    section = side.board.snapshot(0)["volumes"]
    return [str(v["client"]) for v in section["volumes"]]


def now() -> float:
    return time.time()


def _first_diff(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), -1)
