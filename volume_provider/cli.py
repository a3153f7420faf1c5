"""The `volume-provider` command: `run --config PATH` serves; `check` asks the local RMS."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from rms import servicecli
from rms.identity import KEY_FILE_NAME, IdentityError, NodeIdentity, load
from rms.wg.errors import WireGuardError
from rms.wg.manager import open_wireguard
from volume_provider.config import ProviderConfig, load_config
from volume_provider.export import Exporter
from volume_provider.rmslink import RmsLink
from volume_provider.service import ProviderService
from volume_provider.store import StoreError, VolumeStore
from volume_provider.target.backends import open_backend
from volume_provider.target.model import TargetError

PROG = "volume-provider"
DESCRIPTION = (
    "True Cloud Volume Provider: exports contributed storage as iSCSI volumes over nested VPNs"
)

log = structlog.get_logger("volume_provider")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `volume-provider` console script."""
    parser = servicecli.build_parser(PROG, DESCRIPTION, [register_run])
    return servicecli.run(parser, argv)


def register_run(sub: Any) -> None:
    """Add `volume-provider run`."""
    parser: argparse.ArgumentParser = sub.add_parser("run", help="serve volumes (foreground)")
    parser.add_argument("--config", type=Path, help="TOML config (default /etc/volume-provider/)")
    parser.set_defaults(handler=handle_run)


def handle_run(args: argparse.Namespace) -> int:
    """Load config and node key, then serve until SIGTERM or SIGINT."""

    def run(config: ProviderConfig) -> None:
        identity = load(config.rms.state_dir / KEY_FILE_NAME)
        # netlink (pyroute2) needs the standard loop, not uvloop (docs/architecture.md)
        asyncio.run(serve(config, identity))

    errors = (IdentityError, StoreError, TargetError, WireGuardError)
    return servicecli.launch(PROG, lambda: load_config(args.config), run, errors)


async def serve(config: ProviderConfig, identity: NodeIdentity) -> None:
    """Start the configured target (tgt: start or adopt tgtd; truenas: log in to the
    middleware), then run the provider until a signal; what was started stops with us."""
    store = VolumeStore(config.provider.data_dir)
    store.prepare()
    config.tgt.log_dir.mkdir(parents=True, exist_ok=True)
    async with open_backend(config, store) as backend:
        wireguard = await open_wireguard("auto", log_dir=config.tgt.log_dir)
        exporter = Exporter(store, wireguard, backend, config.provider.wg_port_first)
        rms = RmsLink(config.rms.socket)
        service = ProviderService(config, identity, exporter, rms, tgtd=backend.watch)
        await _until_signal(service)


async def _until_signal(service: ProviderService) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(service.run())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.info("provider.stopped")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
