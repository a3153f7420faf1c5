"""`rms broadcast storage|cpu AMOUNT`: ask the cloud for resources through the local daemon."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from rms.config import ConfigError, load_config
from rms.control.client import ControlClient, ControlError, DaemonUnavailable


def register(sub: Any) -> None:
    """Add `rms broadcast` to the command line."""
    p: argparse.ArgumentParser = sub.add_parser(
        "broadcast", help="broadcast a signed resource request over the node's VPNs"
    )
    p.add_argument("kind", choices=("storage", "cpu"), help="storage (bytes) or cpu (millicores)")
    p.add_argument("amount", type=_positive, help="how much")
    p.add_argument("--hops", type=int, choices=range(1, 256), metavar="1..255", help="hop limit")
    p.add_argument("--config", type=Path, help="TOML config file")
    p.set_defaults(handler=handle)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value < 2**63:
        raise argparse.ArgumentTypeError("the amount must be at least 1")
    return value


def handle(args: argparse.Namespace) -> int:
    """Send it; 0 when the daemon broadcast it, 1 when it could not, 2 on misuse."""
    try:
        socket = load_config(args.config).control.socket
    except ConfigError as e:
        print(f"rms broadcast: {e}", file=sys.stderr)
        return 2
    body: dict[str, Any] = {"kind": args.kind, "amount": args.amount}
    if args.hops is not None:
        body["hop_limit"] = args.hops
    try:
        answer = asyncio.run(ControlClient(socket).post_json("/v1/broadcast", body))
    except (DaemonUnavailable, ControlError) as e:
        print(f"rms broadcast: {e}", file=sys.stderr)
        return 1
    print(f"rms broadcast: request {answer.get('request_id')} sent")
    return 0
