"""The RMS daemon: owns every task of the node in one TaskGroup and shuts down in order.

It also owns the node's policy (docs/entitlement.md): at construction it chooses the signed
policy document it accepted (or the built-in defaults), and `policy` is what every service
it runs is built with (VPNs, admission, rosters, broadcast, DHT, entitlement, audits).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import os
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import IO, Any

import structlog
from aiohttp import web

from rms import __version__, sdnotify
from rms.config import Config
from rms.control.peer import AccessPolicy, admin_gid
from rms.control.server import ControlServer, create_app
from rms.entitlement.state import PolicyFile
from rms.identity import NodeIdentity
from rms.policy import Policy
from rms.status import NodeState, StatusBoard

Service = Callable[[], Coroutine[Any, Any, None]]


class DaemonError(Exception):
    """The daemon cannot start; the message says why and what to do."""


class _ShutdownRequested(Exception):
    """Raised inside the task group to stop every task in order."""


class Daemon:
    """One node agent: identity, status, control API and the services later issues add."""

    def __init__(
        self, config: Config, identity: NodeIdentity, policy_file: PolicyFile | None = None
    ) -> None:
        self.config = config
        self.identity = identity
        self.log = structlog.get_logger("rms").bind(node_id=identity.node_id_hex[:16])
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self.board = StatusBoard(identity.node_id_hex, __version__, os.getpid(), started)
        self.policy_file = policy_file or PolicyFile.from_config(config)
        self.policy: Policy = self.policy_file.start()
        self.board.add_check("policy", self.policy_file.problem)
        self._services: dict[str, Service] = {}
        self._routes: list[web.RouteDef] = []
        self._stop = asyncio.Event()
        self._started_at = 0.0

    def add_service(self, name: str, service: Service) -> None:
        """Run `service` as a named task of the daemon's task group."""
        self._services[name] = service

    def add_routes(self, routes: list[web.RouteDef]) -> None:
        """Serve these routes on the control API too (before `run`)."""
        self._routes += routes

    def request_stop(self, reason: str = "requested") -> None:
        """Begin an orderly shutdown (signal handlers and tests call this)."""
        if not self._stop.is_set():
            self.log.info("stopping", reason=reason)
            self._stop.set()

    def uptime(self) -> float:
        """Seconds since the daemon started running."""
        return asyncio.get_running_loop().time() - self._started_at

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT or request_stop(); return after every task has ended."""
        loop = asyncio.get_running_loop()
        self._started_at = loop.time()
        gid = admin_gid(self.config.control.admin_group)
        app = create_app(self.board, AccessPolicy(admin_gid=gid), self.uptime)
        app.add_routes(self._routes)
        server = ControlServer(app, self.config.control.socket, gid)
        await server.start()
        self._install_signal_handlers(loop)
        try:
            await self._run_tasks()
        finally:
            self.board.set_state(NodeState.STOPPING)
            sdnotify.notify("STOPPING=1")
            await server.close()
            self._remove_signal_handlers(loop)
            self.log.info("stopped")

    async def _run_tasks(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for name, service in self._services.items():
                    tg.create_task(service(), name=name)
                interval = sdnotify.watchdog_interval()
                if interval is not None:
                    tg.create_task(self._watchdog(interval), name="watchdog")
                tg.create_task(self._wait_for_stop(), name="shutdown")
                self._announce_ready()
        except* _ShutdownRequested:
            pass

    def _announce_ready(self) -> None:
        self.board.set_state(NodeState.RUNNING)
        sdnotify.notify(f"READY=1\nSTATUS=node {self.identity.node_id_hex[:16]} running")
        self.log.info(
            "running", version=__version__, control_socket=str(self.config.control.socket)
        )

    async def _wait_for_stop(self) -> None:
        await self._stop.wait()
        raise _ShutdownRequested

    async def _watchdog(self, interval: float) -> None:
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)

    def _remove_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


class StateDirLock:
    """An exclusive lock on the state directory, so two daemons never share one identity."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "rms.lock"
        self._file: IO[bytes] | None = None

    def __enter__(self) -> StateDirLock:
        self._file = self._path.open("ab")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise DaemonError(
                f"another rms is running with state directory {self._path.parent}"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()


def prepare_state_dir(state_dir: Path) -> None:
    """Create the state directory (0700) if it is missing."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise DaemonError(f"cannot create state directory {state_dir}: {e.strerror}") from None
