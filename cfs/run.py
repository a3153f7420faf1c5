"""`cfs run --config FILE`: put the CFS together from its configuration and run it.

The pieces: the node key (claims are signed by the node, docs/volumes.md), the RMS control
client (broadcast, answers, status, the `pool` section), the WireGuard driver for the
nested links, the initiator, `zpool`. Building the pool waits for offers: a node that hears
from fewer than 8 distinct providers logs why and asks again, until SIGTERM. SIGTERM or
SIGINT then stops it in order: export the pool, detach every volume.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Any

import structlog

from cfs.attach import Attacher
from cfs.audit import ScrubAuditor
from cfs.config import CfsConfig, uuid_bytes
from cfs.healing import Policy
from cfs.initiator.driver import InitiatorDriver, LibiscsiBridge
from cfs.initiator.openiscsi import OpenIscsiDriver
from cfs.lease import VolumeError
from cfs.leasefile import mac_key
from cfs.leasestore import LeaseStore, keep_saved, load_saved, resume, usable
from cfs.placement import PlacementRefused
from cfs.rmssource import RmsVolumeSource
from cfs.service import Cfs, PoolSpec
from cfs.status import SECTION
from cfs.zfs.driver import ZfsCli
from cfs.zfs.status import ZfsError
from rms.control.client import ControlClient
from rms.identity import IdentityError, load
from rms.wg.driver import driver_mode
from rms.wg.errors import WireGuardError
from rms.wg.manager import open_wireguard

log = structlog.get_logger("cfs")
BUILD_RETRY_S = 10.0


class StartError(Exception):
    """The CFS cannot start; the message says why and what to do."""


async def serve(config: CfsConfig) -> None:
    """Run the CFS until SIGTERM/SIGINT; StartError when it cannot start at all."""
    c = config.cfs
    try:
        identity = load(c.identity_file)
    except IdentityError as e:
        raise StartError(f"cannot read the node key: {e}") from None
    control = ControlClient(config.rms.socket)
    source = RmsVolumeSource(
        identity,
        control,
        location=uuid_bytes("location", c.location),
        network=uuid_bytes("network", c.network),
        offer_wait_s=config.healing.offer_wait_s,
        distinct_blocks=c.distinct_blocks,
    )
    try:
        wireguard = await open_wireguard(driver_mode(c.wireguard), log_dir=c.run_dir)
    except WireGuardError as e:
        raise StartError(f"no WireGuard: {e}") from None
    h = config.healing
    cfs = Cfs(
        PoolSpec(c.pool, c.mountpoint, c.volume_size, identity.node_id_hex),
        source=source,
        attacher=Attacher(wireguard, _initiator(config)),
        zfs=ZfsCli(),
        policy=Policy(h.renew_margin_s, h.retry_s, h.max_retry_s, h.poll_s, h.hot_spare),
        reach=source.check_reach,
        audit=ScrubAuditor(control, identity.public_key).run,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def publish(section: dict[str, Any]) -> None:
        await control.put_json(f"/v1/status/sections/{SECTION}", section)

    store = LeaseStore(c.state_file, mac_key(bytes(identity.signing_key)))
    try:
        if await _build(cfs, stop, publish, store, source):
            async with asyncio.TaskGroup() as tg:
                every = config.healing.poll_s
                tg.create_task(keep_saved(cfs, store, source, stop, every), name="cfs-leases")
                await cfs.run(stop, publish, config.rms.status_interval_s)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _initiator(config: CfsConfig) -> InitiatorDriver:
    c = config.cfs
    if c.initiator == "open-iscsi":
        return OpenIscsiDriver()
    return LibiscsiBridge(c.run_dir / "bridges", c.initiator_iqn)


async def _build(
    cfs: Cfs, stop: asyncio.Event, publish: Any, store: LeaseStore, source: RmsVolumeSource
) -> bool:
    """Take the saved pool back, or build one, retrying while offers are too few; False if
    stopped first. A saved pool is retried while 5 of its leases are unexpired."""
    saved = load_saved(store)
    while not stop.is_set():
        try:
            if saved is not None and usable(saved, time.time()):
                await resume(cfs, saved, source)
                return True
            if saved is not None:
                log.warning("cfs.saved_pool_expired", pool=saved.pool)
                store.remove()
                saved = None
            await cfs.build()
            return True
        except (PlacementRefused, VolumeError, ZfsError) as e:
            cfs.problem = str(e)
            log.warning("cfs.build_failed", reason=str(e), retry_s=BUILD_RETRY_S)
        with contextlib.suppress(Exception):
            await publish(cfs.snapshot())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), BUILD_RETRY_S)
    return False
