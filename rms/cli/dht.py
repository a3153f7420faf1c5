"""`rms dht …`: look things up in the cloud-wide DHT and publish this node's records.

Every command asks the local daemon through the control API (docs/dht.md, "In the
daemon"); the daemon signs with the node key, the CLI never reads it.
Exit codes: 0 found (or stored), 1 not found or the daemon is down, 2 misuse.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rms.cli.broadcast import _positive as positive
from rms.config import ConfigError, load_config
from rms.control.client import ControlClient, ControlError, DaemonUnavailable

WAIT_S = 30.0  # a lookup has a 10 s deadline in the daemon; leave it room


def register(sub: Any) -> None:
    """Add `rms dht` and its subcommands to the command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the daemon's answer as JSON")
    common.add_argument("--config", type=Path, help="TOML config file")
    dht: argparse.ArgumentParser = sub.add_parser("dht", help="the cloud-wide DHT")
    dsub = dht.add_subparsers(dest="dht_command", metavar="DHT_COMMAND", required=True)
    p = dsub.add_parser("get", parents=[common], help="the record under a 32-byte key (hex)")
    p.add_argument("key", type=_hex32)
    p.set_defaults(handler=_handler(lambda a: ("/v1/dht/get", {"key": a.key})))
    p = dsub.add_parser("peer", parents=[common], help="a node's peer record, by its node id")
    p.add_argument("node_id", type=_hex32)
    p.set_defaults(handler=_handler(lambda a: ("/v1/dht/get", {"node_id": a.node_id})))
    p = dsub.add_parser("providers", parents=[common], help="who provides storage or cpu")
    p.add_argument("resource", choices=("storage", "cpu"))
    p.set_defaults(handler=_handler(lambda a: ("/v1/dht/get", {"providers": a.resource})))
    p = dsub.add_parser("provide", parents=[common], help="publish this node's provider record")
    p.add_argument("resource", choices=("storage", "cpu"))
    p.add_argument("amount", type=positive, help="bytes of storage or millicores")
    p.add_argument("--locality", action="append", type=_uuid, default=[], help="a UUID")
    p.set_defaults(handler=_handler(_provide))
    p = dsub.add_parser("records", parents=[common], help="this node's own records")
    p.set_defaults(handler=_handler(lambda a: ("/v1/dht/records", None)))


Request = tuple[str, dict[str, Any] | None]


def _provide(args: argparse.Namespace) -> Request:
    body = {"resource": args.resource, "amount": args.amount, "localities": args.locality}
    return "/v1/dht/provider", body


def _hex32(text: str) -> str:
    try:
        if len(bytes.fromhex(text)) == 32:
            return text.lower()
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not 64 hex digits")


def _uuid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a UUID") from None


def _handler(request: Callable[[argparse.Namespace], Request]) -> Callable[..., int]:
    def handle(args: argparse.Namespace) -> int:
        try:
            socket = load_config(args.config).control.socket
        except ConfigError as e:
            print(f"rms dht: {e}", file=sys.stderr)
            return 2
        route, body = request(args)
        client = ControlClient(socket, timeout=WAIT_S)
        call = client.get_json(route) if body is None else client.post_json(route, body)
        try:
            answer = asyncio.run(call)
        except (DaemonUnavailable, ControlError) as e:
            print(f"rms dht: {e}", file=sys.stderr)
            return 1
        print(json.dumps(answer, indent=2) if args.json else "\n".join(render(answer)))
        return 0 if answer.get("found", True) and answer.get("stored", 1) else 1

    return handle


def render(answer: dict[str, Any]) -> list[str]:
    """The answer for people: one line per record, then what the lookup cost."""
    records = [r for r in [answer.get("record"), *answer.get("records", [])] if r]
    lines = [_record_line(r) for r in records]
    if "found" in answer and not answer["found"]:
        lines.append("not found")
    if "stored" in answer:
        lines.append(f"stored on {answer['stored']} node(s)")
    if "rpcs" in answer:
        took = f" in {answer['elapsed_ms']} ms" if "elapsed_ms" in answer else ""
        lines.append(f"({answer['rpcs']} requests{took})")
    return lines or ["(none)"]


def _record_line(record: dict[str, Any]) -> str:
    fields = record.get("fields", {})
    addrs = ", ".join(f"[{h}]:{p}" for _, h, p in fields.get("addrs", []))
    extra = ""
    if record.get("kind") == "provider":
        extra = f" {fields.get('resource')} {fields.get('amount')}"
    node = str(record.get("node_id"))[:16]
    return f"{record.get('kind')} {node}{extra} seq {record.get('seq')}: {addrs}"
