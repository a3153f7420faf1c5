"""The `cfs` command: `check` (the common front) and `run` (the Cloud File System)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cfs.config import DEFAULT_CONFIG_PATH, load_config
from rms import servicecli

DESCRIPTION = "True Cloud Cloud File System: a ZFS RAIDZ3 pool over 8 remote volumes"
PROG = "cfs"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cfs` console script."""
    parser = servicecli.build_parser(PROG, DESCRIPTION, extra=[register_run])
    return servicecli.run(parser, argv)


def register_run(sub: Any) -> None:
    """Add `run [--config PATH]` to the command's subparsers."""
    run = sub.add_parser("run", help="build the pool and keep it healthy until SIGTERM")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="the CFS TOML file")
    run.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run the CFS: 0 after an orderly stop, 1 when it cannot start, 2 on a bad config."""
    from cfs.run import StartError, serve  # noqa: PLC0415 - `cfs check` needs none of it

    load = lambda: load_config(args.config)  # noqa: E731
    return servicecli.start(PROG, load, serve, (StartError,), netlink=True)
