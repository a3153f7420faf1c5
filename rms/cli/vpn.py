"""`rms vpn leave|rotate UUID`: ask the local daemon to leave a VPN or change its key in one."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

from rms.config import ConfigError, load_config
from rms.control.client import ControlClient, ControlError, DaemonUnavailable


def register(sub: Any) -> None:
    """Add `rms vpn` to the command line."""
    parser: argparse.ArgumentParser = sub.add_parser("vpn", help="act on a management VPN")
    actions = parser.add_subparsers(dest="vpn_action", metavar="ACTION", required=True)
    for action, text in (
        ("leave", "leave the VPN (the guardian takes this node off its roster)"),
        ("rotate", "change this node's WireGuard key in the VPN"),
    ):
        p = actions.add_parser(action, help=text)
        p.add_argument("vpn", type=_vpn_id, help="the VPN's UUID, as `rms status` shows it")
        p.add_argument("--config", type=Path, help="TOML config file")
        p.set_defaults(handler=lambda args, a=action: handle(args, a))


def _vpn_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a VPN UUID") from None


def handle(args: argparse.Namespace, action: str) -> int:
    """Send the request; 0 when the daemon took it, 1 when it could not, 2 on misuse."""
    try:
        socket = load_config(args.config).control.socket
    except ConfigError as e:
        print(f"rms vpn: {e}", file=sys.stderr)
        return 2
    route = f"/v1/vpns/{args.vpn}/{action}"
    try:
        answer = asyncio.run(ControlClient(socket).post_json(route))
    except (DaemonUnavailable, ControlError) as e:
        print(f"rms vpn {action}: {e}", file=sys.stderr)
        return 1
    extra = f", new public key {answer['public_key']}" if "public_key" in answer else ""
    print(f"rms vpn {action}: requested for {answer.get('vpn')}{extra}")
    return 0
