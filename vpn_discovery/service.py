"""`vpn-discovery serve`: one mirror, every task in one TaskGroup, orderly shutdown.

Start: load and re-verify the state file, open the HTTPS listeners, then run the push loop
of each peer, the anti-entropy loop and the housekeeping loop (expiry, state file) as named
tasks. SIGTERM or SIGINT raises a stop inside the group: every task is cancelled and
awaited, the listeners close, the state file is written a last time, and `run` returns.

The state file holds a records bundle (vpn_discovery.mirror), verified record by record on
load like anything a peer sends. Writes are atomic: a temporary file in the same directory,
fsynced, renamed over the old one, and the directory fsynced, so a crash leaves either the
old file or the new one, never half of one.
"""

from __future__ import annotations

import asyncio
import random
import signal
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from rms.atomicfile import write_atomic
from rms.discovery import MAX_RECORD_BYTES
from rms.discovery.client import DiscoveryError, open_session, ssl_context
from vpn_discovery.config import MirrorConfig
from vpn_discovery.mirror import Mirror
from vpn_discovery.replication import Replicator
from vpn_discovery.server import ServerContext, create_app, server_ssl_context
from vpn_discovery.store import RecordStore, StoreLimits

log = structlog.get_logger("vpn_discovery")


class ServiceError(Exception):
    """The mirror cannot start; the message says why and what to do."""


class _StopRequested(Exception):
    """Raised inside the task group to stop every task in order."""


class MirrorService:
    """One discovery mirror."""

    def __init__(
        self,
        config: MirrorConfig,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - feed picks and jitter, not secrets
        limits = StoreLimits(config.store.max_records, config.store.per_founder)
        self.mirror = Mirror(RecordStore(limits))
        self._stop = asyncio.Event()

    def request_stop(self, reason: str = "requested") -> None:
        """Begin an orderly shutdown (signal handlers and tests call this)."""
        if not self._stop.is_set():
            log.info("stopping", reason=reason)
            self._stop.set()

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT or request_stop(); return once everything has stopped."""
        self._load_state()
        tls = self._server_tls()
        try:
            peer_tls = ssl_context(self.config.peers.ca_file or None)
        except DiscoveryError as exc:
            raise ServiceError(f"peers.ca_file: {exc}") from None
        async with open_session(peer_tls, self.config.peers.timeout_s) as session:
            replicator = self._replicator(session)
            runner = web.AppRunner(create_app(self._context(replicator)), access_log=None)
            await runner.setup()
            loop = asyncio.get_running_loop()
            try:
                await self._listen(runner, tls)
                self._install_signal_handlers(loop)
                await self._run_tasks(replicator)
            finally:
                self._remove_signal_handlers(loop)
                await runner.cleanup()
                self._save()
                log.info("stopped")

    def _load_state(self) -> None:
        path = self.config.store.state_file
        cap = self.config.store.max_records * (MAX_RECORD_BYTES + 8) + 16
        try:
            data = read_state(path, cap)
        except StateFileError as exc:
            raise ServiceError(str(exc)) from None
        if data is not None:
            report = self.mirror.receive_bundle(data, self.clock())
            log.info(
                "state.loaded",
                path=str(path),
                records=len(self.mirror.store),
                refused=report.refused,
                error=report.error,
            )

    def _server_tls(self) -> ssl.SSLContext:
        server = self.config.server
        try:
            return server_ssl_context(server.cert_file, server.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ServiceError(
                f"cannot load the certificate {server.cert_file} and key {server.key_file}: "
                f"{exc}; check server.cert_file and server.key_file"
            ) from None

    def _replicator(self, session: aiohttp.ClientSession) -> Replicator:
        peers = self.config.peers
        return Replicator(
            self.mirror,
            peers.urls,
            session,
            interval_s=peers.anti_entropy_s,
            max_sync_bytes=peers.max_sync_bytes,
            rng=self.rng,
            clock=self.clock,
        )

    def _context(self, replicator: Replicator) -> ServerContext:
        return ServerContext(
            mirror=self.mirror,
            feed=self.config.feed,
            public_url=self.config.server.public_url,
            rng=self.rng,
            clock=self.clock,
            on_change=replicator.announce,
            library=self._library(),
        )

    def _library(self) -> Path | None:
        directory = self.config.library.directory
        if not directory:
            return None
        path = Path(directory)
        if not ((path / "metadata").is_dir() and (path / "targets").is_dir()):
            raise ServiceError(f"library.directory {path} has no metadata/ and targets/")
        return path

    async def _listen(self, runner: web.AppRunner, tls: ssl.SSLContext) -> None:
        server = self.config.server
        for host in server.listen:
            site = web.TCPSite(runner, host, server.port, ssl_context=tls)
            try:
                await site.start()
            except OSError as exc:
                raise ServiceError(
                    f"cannot listen on {host} port {server.port}: {exc.strerror}; "
                    "check server.listen and server.port"
                ) from None
        log.info(
            "serving",
            listen=list(server.listen),
            port=server.port,
            records=len(self.mirror.store),
            peers=len(self.config.peers.urls),
        )

    async def _run_tasks(self, replicator: Replicator) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for peer in replicator.peers:
                    tg.create_task(replicator.push_loop(peer), name=f"push {peer.url}")
                tg.create_task(replicator.anti_entropy_loop(), name="anti-entropy")
                tg.create_task(self._housekeeping(), name="housekeeping")
                tg.create_task(self._wait_for_stop(), name="shutdown")
        except* _StopRequested:
            pass

    async def _wait_for_stop(self) -> None:
        await self._stop.wait()
        raise _StopRequested

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.config.store.save_interval_s)
            gone = self.mirror.expire(self.clock())
            if gone:
                log.info("records.expired", count=gone)
            self._save()

    def _save(self) -> None:
        if not self.mirror.take_dirty():
            return
        path = self.config.store.state_file
        data = self.mirror.bundle(self.clock())
        # Written in the loop's thread: a write of a few hundred KiB at most, and never two
        # writers racing to rename an older snapshot over a newer one.
        try:
            write_state(path, data)
        except StateFileError as exc:
            self.mirror.dirty = True  # try again next time; peers hold copies meanwhile
            log.error("state.save_failed", error=str(exc))

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)

    def _remove_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


# --- the state file --------------------------------------------------------------------


class StateFileError(Exception):
    """The state file cannot be read or written; the message says which and why."""


def read_state(path: Path, cap: int) -> bytes | None:
    """The state file's bytes, or None when there is none yet."""
    try:
        with path.open("rb") as f:
            data = f.read(cap + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read state file {path}: {exc.strerror}") from None
    if len(data) > cap:
        raise StateFileError(
            f"state file {path} is larger than {cap} bytes; it was left untouched; "
            "move it away to start with an empty store (peers will refill it)"
        )
    return data


def write_state(path: Path, data: bytes) -> None:
    """Replace the state file with `data`, atomically."""
    try:
        write_atomic(path, data, mode=0o644, dir_mode=0o755)
    except OSError as exc:
        raise StateFileError(f"cannot write state file {path}: {exc.strerror}") from None
