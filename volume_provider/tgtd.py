"""The provider's tgtd: started (or adopted) at start, restarted when it dies, stopped at the end.

tgtd is a separate process (detached: it survives a SIGKILL of the provider), so the
provider checks on it every `WATCH_EVERY_S` (volume_provider.service): when tgtd no longer
answers on its control port it is started again and every lease is exported again from its
kept file (`Exporter.repair`). One that answers when the provider starts is adopted — a
provider that was killed left it — and then it is not stopped with the provider either.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from rms.wg.model import Endpoint
from volume_provider.config import TgtSection
from volume_provider.target.model import Portal, TargetError
from volume_provider.target.tgt import Tgtadm, TgtDaemon, kill, reap

__all__ = ["TGTD_RUN_DIR", "TgtdKeeper", "forget_sockets"]

TGTD_RUN_DIR = Path("/run/tgtd")  # where tgtd puts socket.N (per mount namespace in the lab)

log = structlog.get_logger("volume_provider.tgtd")


class TgtdKeeper:
    """Keeps one tgtd answering on the configured control port."""

    def __init__(self, section: TgtSection) -> None:
        endpoint = Endpoint.parse(section.portal)
        self._daemon = TgtDaemon(
            Portal(str(endpoint.host), endpoint.port),
            section.control_port,
            section.log_dir / "tgtd.log",
        )
        self._adm = Tgtadm(section.control_port)
        self.pid: int | None = None  # ours to stop; None when adopted or not running
        self.starts = 0

    async def answers(self) -> bool:
        """Whether a tgtd answers on the control port."""
        try:
            await self._adm.run("--op", "show", "--mode", "target")
        except TargetError:
            return False
        return True

    async def ensure(self) -> bool:
        """Make sure a tgtd answers; True when one had to be (re)started."""
        if await self.answers():
            if self.pid is None and self.starts == 0:
                log.warning("tgtd.adopted", control_port=self._daemon.control_port)
                self.starts = -1  # adopted: logged once
            return False
        if self.pid is not None:
            reap(self.pid)  # it died: collect it
        self.pid = await self._daemon.start()
        self.starts = max(self.starts, 0) + 1
        log.info("tgtd.started", pid=self.pid, starts=self.starts)
        return True

    async def stop(self) -> None:
        """Stop the tgtd we started (not an adopted one) and remove the control socket it
        leaves behind (SIGKILL gives it no chance to)."""
        if self.pid is not None:
            await kill(self.pid)
            self.pid = None
            forget_sockets(self._daemon.control_port)


def forget_sockets(*control_ports: int) -> None:
    """Remove dead tgtds' control sockets and lock files."""
    for port in control_ports:
        for name in (f"socket.{port}", f"socket.{port}.lock"):
            (TGTD_RUN_DIR / name).unlink(missing_ok=True)
