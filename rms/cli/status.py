"""`rms status`: what the local node is doing, for people (a table) and programs (--json)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from rms.config import ConfigError, load_config
from rms.control.client import ControlClient, ControlError, DaemonUnavailable
from rms.status import BASE_FIELDS

HEALTHY = "running"


def register(sub: Any) -> None:
    """Add `rms status` to the command line."""
    parser: argparse.ArgumentParser = sub.add_parser("status", help="show the node's status")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--config", type=Path, help="TOML config file (default /etc/rms/rms.toml)")
    parser.add_argument("--socket", type=Path, help="control socket (default from the config)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Print the status; 0 when running, 1 when down or unhealthy, 2 on misuse."""
    try:
        socket = args.socket or load_config(args.config).control.socket
    except ConfigError as e:
        print(f"rms status: {e}", file=sys.stderr)
        return 2
    try:
        status = asyncio.run(ControlClient(socket).status())
    except (DaemonUnavailable, ControlError) as e:
        if args.json:
            print(json.dumps({"schema_version": 1, "state": "down", "reason": str(e)}))
        print(f"rms status: {e}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2, sort_keys=True) if args.json else render_table(status))
    if status.get("state") != HEALTHY:
        problems = "; ".join(str(p) for p in status.get("problems", [])) or "no reason given"
        print(f"rms status: node is {status.get('state')}: {problems}", file=sys.stderr)
        return 1
    return 0


def render_table(status: dict[str, Any]) -> str:
    """The status as aligned `key  value` lines, then one block per section."""
    rows = [
        ("node", str(status.get("node_id", "?"))),
        ("version", str(status.get("version", "?"))),
        ("state", str(status.get("state", "?"))),
        ("uptime", format_duration(float(status.get("uptime_s", 0.0)))),
        ("pid", str(status.get("pid", "?"))),
    ]
    rows += [("problem", str(p)) for p in status.get("problems", [])]
    lines = [f"{k:<10} {v}" for k, v in rows]
    for name in sorted(set(status) - BASE_FIELDS):
        lines.append("")
        lines.append(name.upper())
        lines.extend(render_section(status[name]))
    return "\n".join(lines)


def render_section(value: Any, indent: str = "  ") -> list[str]:
    """A section in plain lines: a list one item a line, a mapping `key: value`."""
    if isinstance(value, list):
        if not value:
            return [f"{indent}(none)"]
        return [f"{indent}- {_inline(item)}" for item in value]
    if isinstance(value, dict):
        return [f"{indent}{k}: {_inline(v)}" for k, v in value.items()]
    return [f"{indent}{value}"]


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_inline(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return str(value)


def format_duration(seconds: float) -> str:
    """1d 2h 3m 4s style, dropping leading zero units."""
    whole = int(max(seconds, 0))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m")]
    shown = [f"{n}{u}" for n, u in parts if n] + [f"{secs}s"]
    return " ".join(shown)
