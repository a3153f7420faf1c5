"""What the rest of the RMS calls: `ensure` an interface is as configured, `remove`, `state`.

`WireGuard` ties a driver to the mesh controller: it reads the interface, asks
`rms.wg.mesh.plan` for the difference and has the driver apply just that. Calls for one
interface are serialised, so two tasks never interleave their plans; re-ensuring the same
config sends nothing. Log lines name interfaces, backends and abbreviated public keys only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from rms.wg.changes import Change, describe_all
from rms.wg.driver import DriverMode, WireGuardDriver, select_driver
from rms.wg.errors import InterfaceNotFound, WireGuardError
from rms.wg.mesh import plan
from rms.wg.model import InterfaceConfig, InterfaceState, check_name

log = structlog.get_logger("rms.wg")


@dataclass(frozen=True, slots=True)
class EnsureResult:
    """What one `ensure` did: whether it created the interface, and the changes it applied."""

    name: str
    created: bool
    changes: tuple[Change, ...]

    @property
    def changed(self) -> bool:
        """Whether anything was created or changed."""
        return self.created or bool(self.changes)

    def describe(self) -> list[str]:
        """Log-safe summaries of what was done."""
        return (["create"] if self.created else []) + describe_all(self.changes)


class WireGuard:
    """Interfaces kept as configured, through one driver, in this network namespace."""

    def __init__(self, driver: WireGuardDriver, *, clock: Callable[[], float] = time.time) -> None:
        # clock gives UNIX time, the clock of WireGuard's last-handshake times.
        self.driver = driver
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def kind(self) -> str:
        """The backend in use: kernel, userspace or fake."""
        return self.driver.kind

    async def ensure(self, config: InterfaceConfig) -> EnsureResult:
        """Create the interface if missing, then apply only what differs from config."""
        async with self._lock(config.name):
            created = False
            if not await self.driver.exists(config.name):
                await self.driver.create(config.name, config.private_key, config.listen_port)
                created = True
            current = await self.driver.get(config.name)
            changes = plan(config, current, self._clock())
            if changes:
                await self._apply(config.name, changes, created)
        result = EnsureResult(config.name, created, changes)
        if result.changed:
            log.info("wg.ensured", interface=config.name, done=result.describe())
        return result

    async def remove(self, name: str) -> bool:
        """Delete the interface and all it runs; False when there was none."""
        async with self._lock(check_name(name)):
            removed = await self.driver.delete(name)
        if removed:
            log.info("wg.removed", interface=name, backend=self.kind)
        return removed

    async def state(self, name: str) -> InterfaceState | None:
        """The interface as it is now, or None when it does not exist."""
        async with self._lock(check_name(name)):
            try:
                return await self.driver.get(name)
            except InterfaceNotFound:
                return None

    async def names(self) -> list[str]:
        """Every interface this backend has here (also ones a previous run left)."""
        return await self.driver.names()

    async def _apply(self, name: str, changes: tuple[Change, ...], created: bool) -> None:
        try:
            await self.driver.apply(name, changes)
        except WireGuardError as e:
            kept = "it was created and is kept" if created else "it is left as it is now"
            raise type(e)(f"{e.message}; {name}: {kept}, the next ensure retries") from None

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())


async def open_wireguard(mode: DriverMode = "auto", *, log_dir: Path | None = None) -> WireGuard:
    """A WireGuard on the backend mode selects (see rms.wg.driver.select_driver)."""
    return WireGuard(await select_driver(mode, log_dir=log_dir))
