"""The common front of the other services' commands (vpn-discovery, volume-provider, cfs).

They are separate processes that talk to the local RMS through its control API; this module
gives each the same `--version` and `check` (is the local RMS up, and which node is it), and
every long-running command (these and `rms run`) the same start: config, logging, exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rms import __version__
from rms.control.client import ControlClient, ControlError, DaemonUnavailable
from rms.logs import configure_logging
from rms.tomlconfig import ConfigError, LogSection

DEFAULT_SOCKET = Path("/run/rms/control.sock")
Register = Callable[[Any], None]


class Configured(Protocol):
    """What `launch` needs of a program's config: its `[log]` section."""

    @property
    def log(self) -> LogSection: ...


C = TypeVar("C", bound=Configured)


def build_parser(
    prog: str, description: str, extra: Sequence[Register] = ()
) -> argparse.ArgumentParser:
    """A service's parser with `--version`, `check`, and the service's own subcommands."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = sub.add_parser("check", help="check that the local RMS answers on its control API")
    check.add_argument("--socket", type=Path, default=DEFAULT_SOCKET, help="RMS control socket")
    check.set_defaults(handler=lambda args: check_rms(prog, args.socket))
    for register in extra:
        register(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse and dispatch; 2 on misuse as every True Cloud command."""
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        return 2
    code: int = handler(args)
    return code


def run_async(main: Coroutine[Any, Any, None]) -> None:
    """Run a service's main coroutine on uvloop when it is installed, plain asyncio otherwise."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def start(
    prog: str,
    load: Callable[[], C],
    main: Callable[[C], Coroutine[Any, Any, None]],
    start_errors: tuple[type[Exception], ...],
    *,
    netlink: bool = False,
) -> int:
    """Load a service's config (2 if bad), set up logging, run main (1 if it cannot start).

    A service that uses netlink (pyroute2) runs on the standard loop: uvloop has no
    AF_NETLINK datagram transports (docs/architecture.md).
    """

    def run_(config: C) -> None:
        if netlink:
            asyncio.run(main(config))
        else:
            run_async(main(config))

    return launch(prog, load, run_, start_errors)


def launch(
    prog: str,
    load: Callable[[], C],
    run_: Callable[[C], None],
    start_errors: tuple[type[Exception], ...],
) -> int:
    """Load a program's config (2 if bad), set up logging, call run_ (1 if it cannot start)."""
    try:
        config = load()
    except ConfigError as exc:
        print(f"{prog}: {exc}; nothing was started", file=sys.stderr)
        return 2
    configure_logging(config.log.format, config.log.level)
    try:
        run_(config)
    except start_errors as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0


def check_rms(prog: str, socket: Path) -> int:
    """Print the local node's id and state; exit 1 when the RMS is down or unhealthy."""
    try:
        status = asyncio.run(ControlClient(socket).status())
    except (DaemonUnavailable, ControlError) as e:
        print(f"{prog}: local RMS unavailable: {e}", file=sys.stderr)
        return 1
    state = status.get("state")
    print(f"{prog}: local RMS node {status.get('node_id')} is {state}")
    return 0 if state == "running" else 1
