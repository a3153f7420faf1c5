"""The Volume Provider's iSCSI target as `[target] backend` chooses it (docs/config.md).

A backend is three things the exporter (volume_provider.export) needs:

- `tgt` (the default): a sparse file per volume (`VolumeStore`); tgtd listens on each
  volume's portal, added per nested VPN; `TgtDriver` over the provider's own tgtd, which
  `TgtdKeeper` starts, watches and stops.
- `truenas`: a sparse zvol `PARENT/<volume id hex>` per volume; the driver makes (or reuses)
  the portal with the target; `TrueNasDriver` over the TrueNAS middleware.
- `lio`: refused at start, before anything is made: LIO's ACLs name each client's initiator
  IQN, which volume grants do not carry.

Wiping a file volume truncates and removes the file; wiping a zvol deletes it
(`pool.dataset.delete`), so its blocks go back to the pool and a new volume is a new zvol.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from rms.wg.model import Endpoint
from volume_provider.config import ProviderConfig
from volume_provider.store import StoreError, VolumeStore
from volume_provider.target.driver import TargetDriver
from volume_provider.target.model import Portal, TargetError
from volume_provider.target.tgt import TgtDriver
from volume_provider.target.truenas import TrueNasDriver
from volume_provider.target.truenas_rpc import MiddlewareClient
from volume_provider.tgtd import TgtdKeeper

__all__ = [
    "Backend",
    "FileVolumes",
    "Portals",
    "TargetPortals",
    "TgtPortals",
    "Volumes",
    "ZvolVolumes",
    "open_backend",
]

LIO_REFUSED = (
    'target.backend = "lio" cannot serve the Volume Provider yet: LIO\'s ACLs name each '
    'client\'s initiator IQN, which volume grants do not carry; use "tgt"'
)
_VOLUME_ID = 16


class Portals(Protocol):
    """Who makes a volume's portal listen on its nested-VPN address."""

    async def add_portal(self, portal: Portal) -> None:
        """Listen on `portal` (idempotent)."""
        ...

    async def remove_portal(self, portal: Portal) -> None:
        """Stop listening on `portal` (idempotent)."""
        ...

    async def strays(self) -> list[Portal]:
        """Portals an earlier run left behind."""
        ...


class Volumes(Protocol):
    """Where volumes' data lives."""

    def backing(self, volume_id: bytes) -> str:
        """What `TargetConfig.backing` names for the volume."""
        ...

    async def create(self, volume_id: bytes, size: int) -> None:
        """A new, empty volume; StoreError if it exists already."""
        ...

    async def check(self, volume_id: bytes, size: int) -> None:
        """StoreError unless a restored volume is there with its size."""
        ...

    async def wipe(self, volume_id: bytes) -> None:
        """Destroy the volume's data (absent is fine); StoreError if that failed."""
        ...

    async def wipe_all(self, keep: Collection[bytes]) -> int:
        """Wipe every volume but those of `keep`; how many were wiped."""
        ...


class TgtPortals:
    """tgtd listens on each volume's portal, added and removed around its target."""

    def __init__(self, tgt: TgtDriver) -> None:
        self.tgt = tgt

    async def add_portal(self, portal: Portal) -> None:
        await self.tgt.add_portal(portal)

    async def remove_portal(self, portal: Portal) -> None:
        await self.tgt.remove_portal(portal)

    async def strays(self) -> list[Portal]:
        own = str(self.tgt.portal) if self.tgt.portal is not None else None
        found = []
        for text in await self.tgt.portals():
            if text != own:
                endpoint = Endpoint.parse(text)
                found.append(Portal(str(endpoint.host), endpoint.port))
        return found


class TargetPortals:
    """The driver opens and closes a target's portal with the target itself (TrueNAS)."""

    async def add_portal(self, portal: Portal) -> None:
        return None

    async def remove_portal(self, portal: Portal) -> None:
        return None

    async def strays(self) -> list[Portal]:
        return []


class FileVolumes:
    """Sparse files in the provider's data directory."""

    def __init__(self, store: VolumeStore) -> None:
        self.store = store

    def backing(self, volume_id: bytes) -> str:
        return str(self.store.path(volume_id))

    async def create(self, volume_id: bytes, size: int) -> None:
        self.store.create(volume_id, size)

    async def check(self, volume_id: bytes, size: int) -> None:
        self.store.check(volume_id, size)

    async def wipe(self, volume_id: bytes) -> None:
        self.store.wipe(volume_id)

    async def wipe_all(self, keep: Collection[bytes]) -> int:
        return self.store.wipe_all(keep)


class ZvolVolumes:
    """Sparse zvols under the TrueNAS parent dataset, made and deleted through the middleware."""

    def __init__(self, driver: TrueNasDriver) -> None:
        self.driver = driver
        self._name = re.compile(re.escape(driver.parent) + r"/[0-9a-f]{32}")

    def backing(self, volume_id: bytes) -> str:
        if len(volume_id) != _VOLUME_ID:
            raise StoreError("a volume id is 16 bytes")
        return f"{self.driver.parent}/{volume_id.hex()}"

    async def create(self, volume_id: bytes, size: int) -> None:
        try:
            await self.driver.create_zvol(self.backing(volume_id), size)
        except TargetError as e:
            raise StoreError(str(e)) from None

    async def check(self, volume_id: bytes, size: int) -> None:
        backing = self.backing(volume_id)
        try:
            have = (await self.driver.zvols()).get(backing)
        except TargetError as e:
            raise StoreError(str(e)) from None
        if have is None:
            raise StoreError(f"zvol {backing} is gone")
        if have != size:
            raise StoreError(f"zvol {backing} has {have} bytes, not {size}")

    async def wipe(self, volume_id: bytes) -> None:
        try:
            await self.driver.destroy_backing(self.backing(volume_id))
        except TargetError as e:
            raise StoreError(f"cannot delete zvol of volume {volume_id.hex()}: {e}") from None

    async def wipe_all(self, keep: Collection[bytes]) -> int:
        kept = {self.backing(v) for v in keep}
        try:
            found = [z for z in await self.driver.zvols() if self._name.fullmatch(z)]
            gone = [z for z in found if z not in kept]
            for zvol in gone:
                await self.driver.destroy_backing(zvol)
        except TargetError as e:
            raise StoreError(f"cannot delete leftover zvols: {e}") from None
        return len(gone)


@dataclass
class Backend:
    """The chosen target: its driver, where data lives, who opens portals, and a check
    run every watch period (True when it had to restart something)."""

    kind: str
    driver: TargetDriver
    volumes: Volumes
    portals: Portals
    watch: Callable[[], Awaitable[bool]] | None = None


@asynccontextmanager
async def open_backend(config: ProviderConfig, store: VolumeStore) -> AsyncIterator[Backend]:
    """Start (or reach) the configured target; TargetError saying why it cannot be used.
    What it started is stopped when the context ends."""
    kind = config.target.backend
    if kind == "tgt":
        tgtd = TgtdKeeper(config.tgt)
        await tgtd.ensure()
        try:
            tgt = TgtDriver(None, config.tgt.control_port)
            yield Backend(kind, tgt, FileVolumes(store), TgtPortals(tgt), tgtd.ensure)
        finally:
            await tgtd.stop()
    elif kind == "truenas":
        client = MiddlewareClient(config.truenas.endpoint())
        try:
            driver = TrueNasDriver(client, config.truenas.parent_dataset)
            # Logs in and reads the iSCSI config: a wrong key or address fails here.
            basename = (await driver.snapshot()).basename
            if basename != config.truenas.basename:
                raise TargetError(
                    f"TrueNAS's iSCSI base name is {basename!r}, not truenas.basename = "
                    f"{config.truenas.basename!r}: volumes' target names start with it; "
                    "set truenas.basename to TrueNAS's"
                )
            yield Backend(kind, driver, ZvolVolumes(driver), TargetPortals())
        finally:
            await client.close()
    else:
        raise TargetError(LIO_REFUSED)
