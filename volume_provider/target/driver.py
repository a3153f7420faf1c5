"""The narrow iSCSI target interface, and `TargetManager`, which joins controller and driver.

A driver reports targets and applies change lists; `volume_provider.target.changes` decides
what to change. Backends: `TgtDriver` (userspace tgt; the lab), `LioDriver` (the kernel's
LIO through rtslib-fb) and `TrueNasDriver` (the TrueNAS middleware); the Volume Provider
picks one with `[target] backend` (volume_provider.target.backends).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import structlog

from volume_provider.target.changes import TargetChange, plan, plan_removal, plan_target
from volume_provider.target.model import TargetConfig, TargetState

log = structlog.get_logger("volume_provider.target")


class TargetDriver(Protocol):
    """One iSCSI target backend."""

    @property
    def kind(self) -> str:
        """`tgt`, `lio`, `truenas` or `fake`."""
        ...

    async def targets(self) -> list[TargetState]:
        """Every target the backend exports, with LUNs, accounts (names only) and ACLs."""
        ...

    async def apply(self, changes: Sequence[TargetChange]) -> None:
        """Apply the changes in order, and nothing else."""
        ...


class TargetManager:
    """ensure/remove/reconcile over any driver: read state, plan, apply the difference."""

    def __init__(self, driver: TargetDriver) -> None:
        self.driver = driver

    async def ensure_target(self, config: TargetConfig) -> list[TargetChange]:
        """Make one target match config; the changes that were applied."""
        have = {t.iqn: t for t in await self.driver.targets()}.get(config.iqn)
        return await self._apply(plan_target(config, have))

    async def remove_target(self, iqn: str) -> list[TargetChange]:
        """Remove one target if present; the changes that were applied."""
        return await self._apply(plan_removal(iqn, await self.driver.targets()))

    async def reconcile(self, desired: Sequence[TargetConfig]) -> list[TargetChange]:
        """Export exactly `desired`; the changes that were applied."""
        return await self._apply(plan(desired, await self.driver.targets()))

    async def targets(self) -> list[TargetState]:
        """What the backend exports now."""
        return await self.driver.targets()

    async def _apply(self, changes: list[TargetChange]) -> list[TargetChange]:
        if changes:
            # Change reprs hold ChapSecret objects, which print as [secret].
            log.info("target changes", backend=self.driver.kind, changes=[repr(c) for c in changes])
            await self.driver.apply(changes)
        return changes
