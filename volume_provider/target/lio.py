"""The LIO backend: the kernel's iSCSI target through rtslib-fb (configfs).

Written against rtslib-fb's documented API (`RTSRoot`, `FabricModule`, `Target`, `TPG`,
`NetworkPortal`, `FileIOStorageObject`, `LUN`, `NodeACL`, `MappedLUN`). It needs the
target_core and iscsi_target_mod kernel modules and configfs at /sys/kernel/config; without
them `probe()` fails with a `TargetError` saying so (the case on the project's VMs, where
it is the tested behaviour). Differences from tgt, by LIO's design: an ACL names an
initiator IQN, not an address (the address restriction comes from the volume's nested
WireGuard VPN, whose only peer is the client), and CHAP credentials live on that ACL, so
`TargetConfig.initiator_iqn` is required here.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from volume_provider.target.changes import (
    AllowInitiator,
    BindAccount,
    CreateTarget,
    DenyInitiator,
    RemoveTarget,
    TargetChange,
    UnbindAccount,
)
from volume_provider.target.model import LUN, LunState, TargetConfig, TargetError, TargetState
from volume_provider.target.tgt import ensure_backing

CONFIGFS_TARGET = Path("/sys/kernel/config/target")


def load_rtslib() -> ModuleType:
    """Import rtslib_fb; TargetError naming the package when it is missing."""
    try:
        return importlib.import_module("rtslib_fb")
    except ImportError as e:
        raise TargetError("LIO needs rtslib-fb (Debian python3-rtslib-fb)") from e


class LioDriver:
    """The `TargetDriver` over LIO; every rtslib call runs in a worker thread."""

    kind = "lio"

    def __init__(self, configfs: Path = CONFIGFS_TARGET) -> None:
        self.configfs = configfs
        self._rtslib: ModuleType | None = None

    async def probe(self) -> None:
        """Check that LIO can be driven here; TargetError saying what is missing."""
        if not await asyncio.to_thread(self.configfs.is_dir):
            raise TargetError(
                f"LIO is not available: {self.configfs} is missing (load the target_core_mod "
                "and iscsi_target_mod kernel modules, or use the tgt backend)"
            )
        self._rtslib = load_rtslib()

    def _lib(self) -> ModuleType:
        if self._rtslib is None:
            raise TargetError("LioDriver used before probe()")
        return self._rtslib

    async def targets(self) -> list[TargetState]:
        """Every iSCSI target in LIO's configfs."""
        return await asyncio.to_thread(self._targets)

    def _targets(self) -> list[TargetState]:
        root = self._lib().RTSRoot()
        out = []
        for tid, target in enumerate(sorted(root.targets, key=lambda t: t.wwn), start=1):
            if target.fabric_module.name == "iscsi":
                out.append(self._state(target, tid))
        return out

    def _state(self, target: Any, tid: int) -> TargetState:
        luns, users, acl = [], [], []
        for tpg in target.tpgs:
            luns += [_lun_state(lun) for lun in tpg.luns]
            for node in tpg.node_acls:
                acl.append(node.node_wwn)
                if node.chap_userid:
                    users.append(node.chap_userid)
        return TargetState(target.wwn, tid, tuple(luns), tuple(users), tuple(acl))

    async def apply(self, changes: Sequence[TargetChange]) -> None:
        """Apply the changes in order."""
        for change in changes:
            await asyncio.to_thread(self._apply, change)

    def _apply(self, change: TargetChange) -> None:
        match change:
            case CreateTarget(config):
                self._create(config)
            case RemoveTarget(iqn, _, _):
                self._find(iqn).delete()
            case BindAccount() | UnbindAccount() | AllowInitiator() | DenyInitiator():
                # LIO keys CHAP and ACLs on the initiator IQN: re-create rather than patch.
                raise TargetError("LIO targets are changed by remove and create, not in place")

    def _find(self, iqn: str) -> Any:
        for target in self._lib().RTSRoot().targets:
            if target.wwn == iqn:
                return target
        raise TargetError(f"LIO has no target {iqn}")

    def _create(self, c: TargetConfig) -> None:
        if c.initiator_iqn is None:
            raise TargetError(f"target {c.iqn}: LIO ACLs need the initiator's IQN")
        lib = self._lib()
        ensure_backing(Path(c.backing), c.size)
        store = lib.FileIOStorageObject(c.iqn.rsplit(":", 1)[-1], dev=c.backing, size=c.size)
        tpg = lib.TPG(lib.Target(lib.FabricModule("iscsi"), c.iqn), 1)
        tpg.set_attribute("authentication", "1")
        lib.NetworkPortal(tpg, c.portal.address, c.portal.port)
        lun = lib.LUN(tpg, LUN, store)
        node = lib.NodeACL(tpg, c.initiator_iqn)
        node.chap_userid, node.chap_password = c.chap_user, c.chap_secret.reveal()
        lib.MappedLUN(node, LUN, lun)
        tpg.enable = True


def _lun_state(lun: Any) -> LunState:
    store = lun.storage_object
    size = int(getattr(store, "size", 0))
    return LunState(int(lun.lun), getattr(store, "udev_path", None), size >> 20, 512)
