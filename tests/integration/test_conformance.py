"""libiscsi's conformance suite against a volume as the provider exports it, and against bare
tgt, on this machine in the same run; the pass counts must be equal (issue 5, item 6).

The provider's volume is reached the way a client reaches it: `volume-provider run` grants
it (tests/integration/provider_support.py), the client namespace brings up the nested
WireGuard link, and `iscsi-test-cu` logs in over it with the lease's CHAP credentials. The
baseline is a tgtd of its own with one 64 MiB file LUN, no CHAP and ACL `ALL`, as in
docs/storage-drivers.md. Both run `--test=SCSI` with destructive tests allowed (-d).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from pathlib import Path

from rms.identity import NodeIdentity
from rms.volumes import ClientCore, ClientLease, Granted, Offer
from rms.wg.keys import WgPrivateKey
from tests.integration.host_support import needs_root_and
from tests.integration.provider_support import (
    C_ADDR,
    ClientLink,
    ask,
    enter,
    provider_config,
    provider_process,
    rms_side,
    two_namespaces,
    write_key,
)
from volume_provider.target.model import Portal
from volume_provider.target.tgt import Tgtadm, TgtDaemon, kill
from volume_provider.tgtd import forget_sockets

TOOLS = ("tgtd", "tgtadm", "wireguard-go", "wg", "nsenter", "ip", "iscsi-test-cu")
pytestmark = needs_root_and(
    *TOOLS, packages="tgt, wireguard-go, wireguard-tools, iproute2 and libiscsi-bin"
)
MIB = 1024**2
SIZE = 64 * MIB
SUITE_TIMEOUT_S = 600
BARE_IQN = "iqn.2024-01.cloud.true:bare"
CLIENT_WG_PORT = 51820  # inside the client's namespace
# CUnit's run summary: "tests    215    215    208      7        0"
_TESTS = re.compile(r"^\s*tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", re.MULTILINE)


async def run_suite(ns: str, url: str, log: Path) -> tuple[int, int]:
    """(tests run, tests passed) of iscsi-test-cu against `url`, from inside `ns`."""
    argv = [*enter(ns), "iscsi-test-cu", "-d", "-s", "--test=SCSI", url]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), SUITE_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    log.write_text(text)
    found = _TESTS.search(text)
    assert found is not None, f"no CUnit summary in {log}: {text[-500:]}"
    return int(found.group(2)), int(found.group(3))


async def bare_tgt(ns: str, tmp: Path, control: int) -> tuple[int, str]:
    """A tgtd with one file LUN, no CHAP, every initiator allowed; (pid, url)."""
    portal = Portal("127.0.0.1", 3260)
    pid = await TgtDaemon(portal, control, tmp / "bare-tgtd.log", enter(ns)).start()
    adm = Tgtadm(control, enter(ns))
    backing = tmp / "bare.img"
    with backing.open("xb") as f:
        f.truncate(SIZE)
    await adm.run("--op", "new", "--mode", "target", "--tid", "1", "-T", BARE_IQN)
    lun = ("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1")
    await adm.run(*lun, "-b", str(backing))
    await adm.run("--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")
    return pid, f"iscsi://127.0.0.1:3260/{BARE_IQN}/1"


async def provider_volume(
    cns: str, offers: list[Offer], client: NodeIdentity, wg_key: WgPrivateKey
) -> ClientLease:
    """Claim the offered volume from the provider."""
    (offer,) = offers
    core = ClientCore(client, random.Random(11))
    _, claim = core.claim(offer, wg_key.public_key().raw, CLIENT_WG_PORT, [C_ADDR], time.time())
    granted = core.receive(await ask(cns, claim, 7950), offer.provider, time.time())
    assert isinstance(granted, Granted), granted
    return granted.lease


async def test_the_provider_export_passes_what_bare_tgt_passes(tmp_path: Path) -> None:
    write_key(tmp_path / "state", b"Q" * 32)
    provider, client = NodeIdentity.from_seed(b"Q" * 32), NodeIdentity.from_seed(b"R" * 32)
    control = 31000 + os.getpid() % 800 * 2  # tgtd -C takes at most 32767; clear of others
    with two_namespaces("k") as (pns, cns):
        async with rms_side(tmp_path, provider, client) as (side, sock):
            # A long lease: the suite must not outlive it (no renewals in this test).
            config = provider_config(tmp_path, sock, control, 3600)
            async with provider_process(pns, config, tmp_path / "provider.log"):
                deadline = time.monotonic() + 60
                while "volumes" not in side.board.snapshot(0):
                    assert time.monotonic() < deadline, "the provider did not start"
                    await asyncio.sleep(0.2)
                offers = await side.offers(side.broadcast(SIZE))
                wg_key = WgPrivateKey.generate()
                lease = await provider_volume(cns, offers, client, wg_key)
                link = ClientLink(cns, "tvc" + lease.volume_id.hex()[:12])
                s = lease.secrets
                try:
                    await link.up(tmp_path, wg_key.raw, CLIENT_WG_PORT, s)
                    url = f"iscsi://{s.chap_user}%{s.chap_secret}@[{s.portal}]:{s.portal_port}"
                    ours = await run_suite(cns, f"{url}/{s.iqn}/1", tmp_path / "provider.txt")
                finally:
                    await link.down()
                pid, bare_url = await bare_tgt(cns, tmp_path, control + 1)
                try:
                    bare = await run_suite(cns, bare_url, tmp_path / "bare.txt")
                finally:
                    await kill(pid)
                    forget_sockets(control, control + 1)
    print(
        f"iscsi-test-cu: provider export {ours[1]}/{ours[0]} passed, bare tgt {bare[1]}/{bare[0]}"
    )
    assert ours[0] == bare[0] and ours[0] > 0
    assert ours[1] == bare[1]
