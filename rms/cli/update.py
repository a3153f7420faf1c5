"""`rms update check|fetch|install`: the component library, verified before anything is used.

    rms update check [--json]              refresh the signed metadata, list the targets
    rms update fetch NAME [--output PATH]  download and verify one target
    rms update install NAME...             download, verify, then install each target

Exit codes: 0 done; 1 refused (the library did not verify: nothing was installed) or
unavailable (no mirror answered) or the install step failed; 2 misuse or a bad config.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rms.config import Config, ConfigError, load_config
from rms.logs import configure_logging
from rms.update.client import (
    InstallError,
    Library,
    LibraryUnavailable,
    UpdateRefused,
    node_installer,
)
from rms.update.fetcher import DirectorySource, MirrorSource, Source
from rms.update.roles import RepoError

EXIT_OK, EXIT_FAILED, EXIT_MISUSE = 0, 1, 2


def register(sub: Any) -> None:
    """Add `rms update` to the command line."""
    p: argparse.ArgumentParser = sub.add_parser(
        "update", help="check, fetch and install signed components from the library"
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML config file")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", parents=[common], help="refresh and list the targets")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    fetch = actions.add_parser("fetch", parents=[common], help="download and verify a target")
    fetch.add_argument("name")
    fetch.add_argument("--output", type=Path, help="copy the verified file here")
    install = actions.add_parser("install", parents=[common], help="verify, then install")
    install.add_argument("names", nargs="+", metavar="NAME")
    p.set_defaults(handler=handle)


def library(config: Config) -> Library:
    """The node's view of the library, from its configuration."""
    section = config.update
    source: Source
    if section.directory:
        source = DirectorySource(Path(section.directory))
    else:
        urls = section.urls or config.discovery.urls
        if not urls:
            raise ConfigError("set update.urls, discovery.urls or update.directory")
        source = MirrorSource(urls, ca_file=config.discovery.ca_file or None)
    cache = Path(section.cache_dir) if section.cache_dir else config.node.state_dir / "library"
    return Library(section.trusted_root, cache, source)


def handle(args: argparse.Namespace) -> int:
    """Run one action; see the module docstring for exit codes."""
    try:
        config = load_config(args.config)
        lib = library(config)
    except (ConfigError, ValueError) as e:
        print(f"rms update: {e}", file=sys.stderr)
        return EXIT_MISUSE
    # Warnings (a mirror refused, one down) go to stderr; stdout stays the answer (--json).
    configure_logging(config.log.format, "warning")
    now = datetime.now(UTC)
    try:
        return _ACTIONS[args.action](args, config, lib, now)
    except UpdateRefused as e:
        print(f"rms update: refused, nothing was installed: {e}", file=sys.stderr)
    except LibraryUnavailable as e:
        print(f"rms update: {e}; nothing was installed, try again later", file=sys.stderr)
    except (InstallError, RepoError, OSError) as e:
        print(f"rms update: {e}", file=sys.stderr)
    return EXIT_FAILED


def _check(args: argparse.Namespace, _: Config, lib: Library, now: datetime) -> int:
    available = lib.check(now)
    if args.json:
        print(json.dumps([a.__dict__ for a in available], indent=2))
    else:
        for a in available:
            extra = " ".join(f"{k}={v}" for k, v in sorted(a.custom.items()))
            print(f"{a.name}  {a.length} bytes  sha256:{a.sha256[:16]}  {extra}".rstrip())
    return EXIT_OK


def _fetch(args: argparse.Namespace, _: Config, lib: Library, now: datetime) -> int:
    path, _info = lib.fetch(args.name, now)
    if args.output is not None:
        shutil.copyfile(path, args.output)
        path = args.output
    print(f"{args.name}: verified, {path}")
    return EXIT_OK


def _install(args: argparse.Namespace, config: Config, lib: Library, now: datetime) -> int:
    policy = Path(config.policy.document or config.node.state_dir / "policy.json")
    installer = node_installer(lib.cache_dir / "documents", policy)
    for name in args.names:
        got = lib.install(name, installer, now)
        print(f"{name}: verified and installed (sha256:{got.sha256[:16]})")
    return EXIT_OK


_ACTIONS = {"check": _check, "fetch": _fetch, "install": _install}
