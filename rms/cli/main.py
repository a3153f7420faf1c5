"""The `rms` command: run the daemon, report its status, drive the lab."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rms import __version__, servicecli
from rms.cli import broadcast as broadcast_cmd
from rms.cli import contribute as contribute_cmd
from rms.cli import dht as dht_cmd
from rms.cli import policy as policy_cmd
from rms.cli import run as run_cmd
from rms.cli import status as status_cmd
from rms.cli import ui as ui_cmd
from rms.cli import update as update_cmd
from rms.cli import vpn as vpn_cmd
from rms.lab import cli as lab_cmd


def build_parser() -> argparse.ArgumentParser:
    """The whole `rms` command line; each subcommand registers its own parser."""
    parser = argparse.ArgumentParser(
        prog="rms", description="True Cloud Resource Management Service"
    )
    parser.add_argument("--version", action="version", version=f"rms {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run_cmd.register(sub)
    status_cmd.register(sub)
    vpn_cmd.register(sub)
    broadcast_cmd.register(sub)
    dht_cmd.register(sub)
    policy_cmd.register(sub)
    ui_cmd.register(sub)
    contribute_cmd.register(sub)
    update_cmd.register(sub)
    lab_cmd.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `rms` console script; returns the exit code."""
    return servicecli.run(build_parser(), argv)
