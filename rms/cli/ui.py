"""`rms ui`: the local web UI in the foreground, on 127.0.0.1 (or ::1) only (docs/webui.md)."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from rms.config import ConfigError, load_config
from rms.control.client import ControlClient
from rms.webui.app import create_app, loopback_hosts


def register(sub: Any) -> None:
    """Add `rms ui` to the command line."""
    p: argparse.ArgumentParser = sub.add_parser("ui", help="serve the local web UI")
    p.add_argument("--config", type=Path, help="TOML config file (default /etc/rms/rms.toml)")
    p.add_argument("--socket", type=Path, help="control socket (default from the config)")
    p.add_argument("--address", choices=("127.0.0.1", "::1"), help="default from [webui]")
    p.add_argument("--port", type=int, help="TCP port (default from [webui]; 0: any free one)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 2 on misuse, 1 when the port cannot be had."""
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"rms ui: {e}", file=sys.stderr)
        return 2
    if args.port is not None and not 0 <= args.port <= 65535:
        print("rms ui: --port must lie in 0..65535", file=sys.stderr)
        return 2
    address = args.address or config.webui.address
    port = config.webui.port if args.port is None else args.port
    client = ControlClient(args.socket or config.control.socket)
    try:
        asyncio.run(serve(client, address, port))
    except OSError as e:
        print(f"rms ui: cannot listen on {address} port {port}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


async def serve(client: ControlClient, address: str, port: int) -> None:
    """Listen, print the login link, and wait for a signal to stop."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    token = secrets.token_urlsafe(24)
    app = create_app(client, token, loopback_hosts(address, bound))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        shown = f"[{address}]" if ":" in address else address
        print(f"rms ui: open http://{shown}:{bound}/?token={token}", flush=True)
        await _until_signal()
    finally:
        await runner.cleanup()
        sock.close()


async def _until_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
