"""Performs the provider core's `Export` and `Unexport`: file, nested VPN, portal, target.

An export, in order (docs/volumes.md, "The nested VPN and the target"):

1. the volume's sparse file (`VolumeStore.create`);
2. its nested WireGuard interface (wireguard-go here, through rms.wg): the lease's key and
   port, the provider's inner address, and one peer — the client's key and PSK, allowed
   only the client's inner /128, endpoint the client's management address;
3. a tgtd portal on the inner address (so the target is reachable only inside that VPN);
4. the target: one LUN on the file, CHAP with the lease's user and secret, ACL = the
   client's inner address.

Any failure undoes what was done and raises `ExportError`. An unexport takes everything
down in the reverse order and always ends by **wiping** the file; a step that fails is
logged and the rest still runs, so a volume is never left exported after it ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Iterable
from ipaddress import IPv6Interface, IPv6Network

import structlog

from rms.volumes import ISCSI_PORT, Lease, Unexport, inner_addresses
from rms.wg.errors import WireGuardError
from rms.wg.keys import WgPublicKey
from rms.wg.manager import WireGuard
from rms.wg.model import ConfigError, Endpoint, InterfaceConfig, PeerConfig
from volume_provider.store import StoreError, VolumeStore
from volume_provider.target.backends import Backend
from volume_provider.target.driver import TargetManager
from volume_provider.target.model import ChapSecret, Portal, TargetConfig, TargetError

__all__ = ["NAME_PREFIX", "ExportError", "Exporter", "VolumeGone", "interface_name"]

NAME_PREFIX = "tvp"  # + 12 hex of the volume id: 15 characters, unique on the machine
KEEPALIVE_S = 25

log = structlog.get_logger("volume_provider.export")


class ExportError(Exception):
    """A volume could not be exported; what was done has been undone."""


class VolumeGone(ExportError):
    """A restored lease's volume file is missing or has another size: the lease must end."""


def interface_name(volume_id: bytes) -> str:
    """The nested-VPN interface of a volume."""
    return NAME_PREFIX + volume_id.hex()[:12]


def link_config(lease: Lease) -> InterfaceConfig:
    """The provider's side of a volume's nested VPN: the client its only peer."""
    s = lease.secrets
    peer = PeerConfig(
        WgPublicKey(lease.client_wg_key),
        Endpoint(lease.client_endpoint, lease.client_wg_port),
        frozenset({IPv6Network((s.client_address, 128))}),
        # wireguard-go sends a keepalive as soon as this is set: after a provider restart the
        # handshake starts at once instead of waiting for the client's rekey timeout.
        persistent_keepalive=KEEPALIVE_S,
        preshared_key=s.wg_psk,
    )
    own = IPv6Interface((s.portal, s.prefix_len))
    return InterfaceConfig(
        interface_name(lease.volume_id), lease.wg_private, lease.wg_port, frozenset({own}), (peer,)
    )


class Exporter:
    """Exports and unexports volumes with one WireGuard and one target backend
    (volume_provider.target.backends: tgt and files, or TrueNAS and zvols)."""

    def __init__(
        self, store: VolumeStore, wireguard: WireGuard, backend: Backend, wg_port_first: int
    ) -> None:
        self.store = store  # the data directory (its files with tgt; measured either way)
        self.wireguard = wireguard
        self.backend = backend
        self.volumes = backend.volumes
        self.portals = backend.portals
        self.targets = TargetManager(backend.driver)
        self._wg_port_first = wg_port_first

    def target_config(self, lease: Lease) -> TargetConfig:
        """The tgt target of a lease; its tid follows from its (unique) nested-VPN port."""
        s = lease.secrets
        return TargetConfig(
            iqn=s.iqn,
            tid=lease.wg_port - self._wg_port_first + 1,
            backing=self.volumes.backing(lease.volume_id),
            size=lease.size,
            chap_user=s.chap_user,
            chap_secret=ChapSecret(s.chap_secret),
            initiator_address=str(s.client_address),
            portal=Portal(str(s.portal), s.portal_port),
        )

    async def export(self, lease: Lease, *, restored: bool = False) -> None:
        """File, link, portal, target. A new volume that fails is undone and wiped
        (ExportError); a `restored` one keeps its file (ExportError: try again later), or
        raises VolumeGone when its file is not there as it should be."""
        vid = lease.volume_id.hex()
        if restored:
            try:
                await self.volumes.check(lease.volume_id, lease.size)
            except StoreError as e:
                raise VolumeGone(f"volume {vid}: {e}") from None
        try:
            if not restored:
                await self.volumes.create(lease.volume_id, lease.size)
            await self.wireguard.ensure(link_config(lease))
            config = self.target_config(lease)
            await self.portals.add_portal(config.portal)
            await self.targets.ensure_target(config)
        except (StoreError, WireGuardError, ConfigError, TargetError) as e:
            log.warning("volume.export_failed", volume=vid, reason=str(e))
            await self._teardown(lease.volume_id, lease.secrets.iqn, wipe=not restored)
            raise ExportError(f"volume {vid}: {e}") from None
        log.info("volume.exported", volume=vid, size=lease.size, client=lease.client_id.hex()[:16])

    async def unexport(self, action: Unexport) -> None:
        """Target, portal, link down; then wipe. Never raises: each failure is logged."""
        await self._teardown(action.volume_id, action.iqn)
        log.info("volume.unexported", volume=action.volume_id.hex(), why=action.why)

    async def suspend(self, lease: Lease) -> None:
        """Target, portal, link down, the data kept: the provider stops, the lease stays."""
        await self._teardown(lease.volume_id, lease.secrets.iqn, wipe=False)
        log.info("volume.suspended", volume=lease.volume_id.hex())

    async def missing(self, leases: Iterable[Lease]) -> list[Lease]:
        """The leases whose target or link is gone (tgtd or a wireguard-go died)."""
        have = {t.iqn for t in await self.targets.targets()}
        links = set(await self.wireguard.names())
        return [
            lease
            for lease in leases
            if lease.secrets.iqn not in have or interface_name(lease.volume_id) not in links
        ]

    async def clear_leftovers(self, keep: Collection[bytes] = ()) -> int:
        """Remove every target and nested link an earlier run left behind, and wipe every
        volume file but those of the leases in `keep` (restored, to be exported again)."""
        await self.targets.reconcile([])
        for name in await self.wireguard.names():
            if name.startswith(NAME_PREFIX):
                await self.wireguard.remove(name)
        for portal in await self.portals.strays():
            await self._quietly("portal", self.portals.remove_portal(portal))
        return await self.volumes.wipe_all(keep)

    async def _teardown(self, volume_id: bytes, iqn: str, *, wipe: bool = True) -> None:
        vid = volume_id.hex()
        portal = Portal(str(inner_addresses(volume_id)[0]), ISCSI_PORT)
        await self._quietly("target", self.targets.remove_target(iqn), vid)
        await self._quietly("portal", self.portals.remove_portal(portal), vid)
        await self._quietly("link", self.wireguard.remove(interface_name(volume_id)), vid)
        if not wipe:
            return
        try:
            await self.volumes.wipe(volume_id)
        except StoreError as e:
            log.error("volume.wipe_failed", volume=vid, reason=str(e))

    @staticmethod
    async def _quietly(step: str, work: Awaitable[object], volume: str = "") -> None:
        try:
            await work
        except (WireGuardError, TargetError, ConfigError) as e:
            log.warning("volume.teardown_step_failed", step=step, volume=volume, reason=str(e))
