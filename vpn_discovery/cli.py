"""The `vpn-discovery` command: `check` (the common front) and `serve` (run a mirror)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rms import servicecli
from vpn_discovery.config import DEFAULT_CONFIG_PATH, load_config
from vpn_discovery.service import MirrorService, ServiceError

DESCRIPTION = "True Cloud management VPN discovery feed (RSS of signed VPN records)"
PROG = "vpn-discovery"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vpn-discovery` console script."""
    parser = servicecli.build_parser(PROG, DESCRIPTION, extra=[register_serve])
    return servicecli.run(parser, argv)


def register_serve(sub: Any) -> None:
    """Add `serve [--config PATH]` to the command's subparsers."""
    serve = sub.add_parser("serve", help="run a discovery mirror until SIGTERM")
    serve.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="the mirror's TOML file"
    )
    serve.set_defaults(handler=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    """Run a mirror: 0 after an orderly stop, 1 when it cannot start, 2 on a bad config."""
    serve = lambda config: MirrorService(config).run()  # noqa: E731
    return servicecli.start(PROG, lambda: load_config(args.config), serve, (ServiceError,))
