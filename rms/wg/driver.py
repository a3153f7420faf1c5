"""The narrow WireGuard driver interface every backend implements, and picking a backend.

A driver creates and deletes interfaces, reads their state and applies change lists; it
makes no decisions. The mesh controller (`rms.wg.mesh`) decides what to change and
`rms.wg.manager.WireGuard` ties the two together for callers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

import structlog

from rms.wg.changes import Change
from rms.wg.errors import WireGuardError
from rms.wg.kernel import KernelDriver
from rms.wg.keys import WgPrivateKey
from rms.wg.model import InterfaceState
from rms.wg.userspace import UserspaceDriver

DriverMode = Literal["auto", "kernel", "userspace"]
MODES: tuple[DriverMode, ...] = ("auto", "kernel", "userspace")


class WireGuardDriver(Protocol):
    """One WireGuard backend; every method acts in the caller's network namespace."""

    @property
    def kind(self) -> str:
        """`kernel`, `userspace` or `fake`."""
        ...

    async def create(self, name: str, private_key: WgPrivateKey, listen_port: int) -> None:
        """Create the interface with its key and port (0: any), down and with no peers."""
        ...

    async def delete(self, name: str) -> bool:
        """Delete the interface and everything it runs; False when there was none."""
        ...

    async def exists(self, name: str) -> bool:
        """Whether this backend has an interface called name."""
        ...

    async def names(self) -> list[str]:
        """The names of this backend's interfaces, sorted."""
        ...

    async def get(self, name: str) -> InterfaceState:
        """The interface's state; InterfaceNotFound when there is none."""
        ...

    async def apply(self, name: str, changes: tuple[Change, ...]) -> None:
        """Apply a change list, WireGuard changes first, then link changes, in order."""
        ...


def driver_mode(text: str) -> DriverMode:
    """A config string as a DriverMode; WireGuardError naming the choices otherwise."""
    for mode in MODES:
        if text == mode:
            return mode
    raise WireGuardError(f"unknown WireGuard mode {text!r}; use one of {', '.join(MODES)}")


async def select_driver(
    mode: DriverMode = "auto", *, log_dir: Path | None = None
) -> WireGuardDriver:
    """The backend for mode; "auto" takes the kernel when it can make a WireGuard link."""
    mode = driver_mode(mode)
    if mode == "userspace":
        return UserspaceDriver(log_dir=log_dir)
    kernel = KernelDriver()
    if mode == "kernel":
        await kernel.probe()
        return kernel
    try:
        await kernel.probe()
    except WireGuardError as e:
        structlog.get_logger("rms.wg").debug("wg.kernel_unavailable", reason=e.message)
        return UserspaceDriver(log_dir=log_dir)
    return kernel
