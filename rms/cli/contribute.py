"""`rms contribute STORAGE [--cpu CORES] [--yes]`: change what the node offers, from a shell.

Without `--yes` it only shows the consequence (the entitlement now and after), like the web
UI's preview; with `--yes` it applies the change through the control API.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from rms.config import ConfigError, load_config
from rms.control.client import ControlClient, ControlError, DaemonUnavailable
from rms.entitlement.arithmetic import ContributionError, format_size, parse_offer


def register(sub: Any) -> None:
    """Add `rms contribute` to the command line."""
    p: argparse.ArgumentParser = sub.add_parser(
        "contribute", help="show or change how much storage and CPU the node offers"
    )
    p.add_argument("storage", help='storage to offer, e.g. "20 GiB"')
    p.add_argument("--cpu", help="CPU cores to offer (default: unchanged)")
    p.add_argument("--yes", action="store_true", help="apply (without it: preview only)")
    p.add_argument("--config", type=Path, help="TOML config file")
    p.add_argument("--socket", type=Path, help="control socket (default from the config)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """0 when shown or applied, 1 when the daemon could not do it, 2 on misuse."""
    try:
        socket = args.socket or load_config(args.config).control.socket
        offer = parse_offer(args.storage, args.cpu)
    except (ConfigError, ContributionError) as e:
        print(f"rms contribute: {e}", file=sys.stderr)
        return 2
    client = ControlClient(socket)
    try:
        preview = asyncio.run(client.post_json("/v1/entitlement/preview", dict(offer)))
        if args.yes:
            asyncio.run(client.post_json("/v1/contribution", dict(offer)))
    except (DaemonUnavailable, ControlError) as e:
        print(f"rms contribute: {e}", file=sys.stderr)
        return 1
    now, after = preview.get("current", {}), preview.get("entitlement", {})
    print(
        f"storage entitlement: {format_size(now.get('storage_bytes', 0))} now, "
        f"{format_size(after.get('storage_bytes', 0))} with {format_size(offer['storage_bytes'])}"
    )
    print("applied" if args.yes else "not applied: run again with --yes to apply")
    return 0
