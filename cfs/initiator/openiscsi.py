"""The open-iscsi backend: the Linux kernel initiator, driven through `iscsiadm`.

`attach` records the node (`-o new`), sets CHAP on it, logs in and waits for udev's
`/dev/disk/by-path/ip-PORTAL-iscsi-IQN-lun-N` link. It needs the iscsi_tcp kernel module and
iscsid; without them iscsiadm fails and `attach` raises `InitiatorError` with iscsiadm's
reason (the tested behaviour on the project's VMs, which have no kernel initiator). The
secret reaches iscsiadm as an argument (`-n node.session.auth.password -v`), the only way
iscsiadm takes it; it is masked in every error.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from cfs.initiator.driver import AttachState, InitiatorError, VolumeTarget, probe_path

BY_PATH = Path("/dev/disk/by-path")
DEVICE_TIMEOUT_S = 20.0
PROBE_TIMEOUT_S = 10.0


class OpenIscsiDriver:
    """The `InitiatorDriver` over iscsiadm and the kernel's iscsi_tcp."""

    kind = "open-iscsi"

    def __init__(self, iscsiadm: str = "iscsiadm", by_path: Path = BY_PATH) -> None:
        self.iscsiadm, self.by_path = iscsiadm, by_path

    def device(self, t: VolumeTarget) -> Path:
        """The udev by-path link of the LUN."""
        return self.by_path / f"ip-{t.portal}-iscsi-{t.iqn}-lun-{t.lun}"

    async def run(self, *args: str, secret: str = "") -> str:
        """Run iscsiadm; stdout, or InitiatorError with the secret masked."""
        try:
            proc = await asyncio.create_subprocess_exec(
                self.iscsiadm, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        except OSError as e:
            raise InitiatorError(
                f"cannot run {self.iscsiadm}: {e.strerror}; install open-iscsi"
            ) from e
        out, err = await proc.communicate()
        if proc.returncode != 0:
            reason = err.decode(errors="replace").strip() or f"exit {proc.returncode}"
            if secret:
                reason = reason.replace(secret, "[secret]")
            raise InitiatorError(f"iscsiadm {args[0]} {args[1]} failed: {reason}")
        return out.decode(errors="replace")

    def _node(self, t: VolumeTarget) -> tuple[str, ...]:
        return ("-m", "node", "-T", t.iqn, "-p", t.portal)

    async def attach(self, target: VolumeTarget) -> Path:
        """Record the node with CHAP, log in, and wait for the by-path device."""
        node = self._node(target)
        await self.run(*node, "-o", "new")
        settings = (
            ("node.session.auth.authmethod", "CHAP"),
            ("node.session.auth.username", target.chap_user),
            ("node.session.auth.password", target.chap_secret),
        )
        for key, value in settings:
            await self.run(*node, "-o", "update", "-n", key, "-v", value, secret=target.chap_secret)
        await self.run(*node, "--login", secret=target.chap_secret)
        return await self._wait_device(target)

    async def _wait_device(self, target: VolumeTarget) -> Path:
        path = self.device(target)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEVICE_TIMEOUT_S
        while loop.time() < deadline:
            if await asyncio.to_thread(path.exists):
                return path
            await asyncio.sleep(0.1)
        raise InitiatorError(f"logged in to {target.iqn} but {path} did not appear")

    async def detach(self, target: VolumeTarget) -> bool:
        """Log out and forget the node; False when there was no session."""
        try:
            await self.run(*self._node(target), "--logout")
        except InitiatorError:
            return False
        await self.run(*self._node(target), "-o", "delete")
        return True

    async def state(self, target: VolumeTarget) -> AttachState:
        """Attached while iscsiadm lists a session to the target."""
        try:
            sessions = await self.run("-m", "session")
        except InitiatorError as e:
            return AttachState(False, detail=str(e))
        if target.iqn not in sessions:
            return AttachState(False)
        path = self.device(target)
        present = await asyncio.to_thread(path.exists)
        return AttachState(True, path if present else None, present)

    async def probe(self, target: VolumeTarget) -> bool:
        """Read one block of the LUN's device (the kernel's timeouts apply below ours)."""
        return await probe_path(self.device(target), PROBE_TIMEOUT_S)
