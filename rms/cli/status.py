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
from rms.entitlement.arithmetic import format_size
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
        render = SECTION_RENDERERS.get(name, render_section)
        lines.extend(render(status[name]))
    return "\n".join(lines)


def render_vpns(value: Any) -> list[str]:
    """One line per VPN: id, role, members, address, and how fresh its handshakes are."""
    if not isinstance(value, list) or not value:
        return ["  (in no management VPN yet)"]
    rows = [("UUID", "ROLE", "MEMBERS", "ADDRESS", "HANDSHAKES")]
    for vpn in value:
        if isinstance(vpn, dict):
            rows.append(_vpn_row(vpn))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        ("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))).rstrip()
        for r in rows
    ]


def _vpn_row(vpn: dict[str, Any]) -> tuple[str, str, str, str, str]:
    peers = [p for p in vpn.get("peers", []) if isinstance(p, dict)]
    ages = [float(p["handshake_age_s"]) for p in peers if p.get("handshake_age_s") is not None]
    shakes = f"{len(ages)}/{len(peers)} peers"
    if ages:
        shakes += f", last {min(ages):.0f}-{max(ages):.0f} s ago"
    return (
        str(vpn.get("uuid", "?")),
        str(vpn.get("role", "?")),
        str(vpn.get("members", "?")),
        str(vpn.get("address", "?")),
        shakes,
    )


def render_joins(value: Any) -> list[str]:
    """How this node got into its VPNs, and why the latest attempt went as it did."""
    if not isinstance(value, dict):
        return render_section(value)
    lines = [f"  founded: {value.get('founded', 0)}"]
    wanted = value.get("wanted")
    if isinstance(wanted, dict):
        lines.append(
            f"  wanted: {wanted.get('count')} VPNs ({wanted.get('source')}; the policy's "
            f"target {wanted.get('target')}, max {wanted.get('max')})"
        )
    for join in value.get("joins", []):
        lines.append(
            f"  joined {str(join.get('vpn'))[:8]}: {join.get('attempts')} attempt(s), "
            f"admitted after {join.get('admitted_s')} s, first handshake after "
            f"{join.get('first_handshake_s')} s, {join.get('guest_bytes')} guest-link bytes"
        )
    last = value.get("last_attempt") or {}
    lines += [f"  latest: {o}" for o in last.get("outcomes", [])[-4:]]
    if value.get("problem"):
        lines.append(f"  problem: {value['problem']}")
    return lines


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


def render_pool(value: Any) -> list[str]:
    """The CFS pool: state and space, resilver progress, one line per volume, last steps."""
    if not isinstance(value, dict):
        return render_section(value)
    size, used = value.get("size_bytes"), value.get("used_bytes")
    space = f"{_gib(used)} of {_gib(size)} used" if size is not None else "size unknown"
    lines = [f"  {value.get('name', '?')}: {value.get('state', '?')}, {space}"]
    if isinstance(value.get("resilver_percent"), int | float):
        lines.append(f"  resilver: {value['resilver_percent']:.1f}% done")
    for v in value.get("volumes", []):
        if isinstance(v, dict):
            state = f"{v.get('zfs_state', '?')} {v.get('state', '?')}"
            lines.append(f"  {v.get('slot', '?')}  {str(v.get('provider', '?'))[:16]}  {state}")
    spare = value.get("spare")
    if isinstance(spare, dict):
        lines.append(f"  spare  {str(spare.get('provider', '-'))[:16]}  {spare.get('state', '?')}")
    lines += [f"  healing: {h}" for h in value.get("healing", [])[-3:]]
    if value.get("problem"):
        lines.append(f"  problem: {value['problem']}")
    return lines


def render_volumes(value: Any) -> list[str]:
    """A Volume Provider: capacity, then one line per leased volume (docs/volumes.md)."""
    if not isinstance(value, dict):
        return render_section(value)
    used, capacity = value.get("used"), value.get("capacity")
    lines = [f"  {_gib(used)} of {_gib(capacity)} leased, {_gib(value.get('free'))} free"]
    for v in value.get("volumes", []):
        if isinstance(v, dict):
            volume, client = str(v.get("volume", "?"))[:16], str(v.get("client", "?"))[:16]
            state = "exported" if v.get("exported") else "not exported"
            expiry = f"lease ends in {v.get('expires_in_s', '?')} s"
            lines.append(f"  {volume}  {_gib(v.get('size'))}  {client}  {state}, {expiry}")
    if value.get("stale"):
        lines.append(f"  (not refreshed for {value.get('published_age_s', '?')} s)")
    return lines


def _gib(value: object) -> str:
    return f"{value / (1 << 30):.2f} GiB" if isinstance(value, int | float) else "?"


def render_entitlement(value: Any) -> list[str]:
    """Contribution, availability and entitlement in units a person reads."""
    if not isinstance(value, dict):
        return render_section(value)
    c, e = value.get("contribution") or {}, value.get("entitlement") or {}
    probation = value.get("probation") or {}
    policy = value.get("policy") or {}
    lines = [
        f"  contribution  {_size(c.get('storage_bytes'))} storage"
        f" ({_size(c.get('verified_storage_bytes'))} verified, from {c.get('source')}),"
        f" {_cores(c.get('cpu_millicores'))} CPU",
        f"  availability  {100 * float(value.get('availability', 0)):.2f} %",
        f"  entitlement   {_size(e.get('storage_bytes'))} storage,"
        f" {_cores(e.get('cpu_millicores'))} CPU (ratio {value.get('ratio')})",
    ]
    if isinstance(c.get("capacity_bytes"), int):
        lines.insert(
            1,
            f"  measured      {_size(c.get('capacity_bytes'))} room,"
            f" {_size(c.get('leased_bytes'))} leased (Volume Provider)",
        )
    if probation.get("active"):
        lines.append(f"  probation     {format_duration(float(probation.get('left_s', 0)))} left")
    lines.append(f"  policy        {_policy_line(policy)}")
    return lines


def _policy_line(policy: dict[str, Any]) -> str:
    version = policy.get("version")
    if not version:
        return "built-in defaults"
    signers = policy.get("signers")
    keys = ", ".join(f"{k[:16]}…" for k in signers if isinstance(k, str)) if signers else "?"
    return f"signed document, version {version}, signed by {keys}"


def render_ledger(value: Any) -> list[str]:
    """Receipts kept, whether they verify, and what they add up to."""
    if not isinstance(value, dict):
        return render_section(value)
    totals = _mapping(value.get("totals"))
    verified = "verifies" if value.get("verified") else f"does not verify: {value.get('problem')}"
    if value.get("verified") is None:
        verified = "is being verified"
    lines = [f"  {value.get('count', 0)} receipts; the ledger {verified}"]
    for role in ("provided", "used"):
        sums = _mapping(totals.get(role))
        storage, cpu = sums.get("storage", 0), sums.get("cpu", 0)
        if isinstance(storage, int) and isinstance(cpu, int):
            hours = f"{storage / 3600 / (1 << 30):.2f} GiB-hours, {cpu / 3_600_000:.2f} core-hours"
            lines.append(f"  {role:<9} {hours}")
    return lines


def render_audits(value: Any) -> list[str]:
    """This node's standing and what it knows of other providers."""
    if not isinstance(value, dict):
        return render_section(value)
    own = _mapping(value.get("own"))
    return [
        f"  this node  {own.get('standing', '?')} (score {own.get('score', '?')})",
        f"  providers  {value.get('providers', 0)} known, {value.get('warned', 0)} warned, "
        f"{value.get('penalised', 0)} penalised; {value.get('reports', 0)} reports kept",
    ]


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _size(value: Any) -> str:
    return format_size(value) if isinstance(value, int) and value >= 0 else "?"


def _cores(value: Any) -> str:
    return f"{value / 1000:g} cores" if isinstance(value, int) else "?"


SECTION_RENDERERS = {
    "vpns": render_vpns,
    "vpn_joins": render_joins,
    "pool": render_pool,
    "volumes": render_volumes,
    "entitlement": render_entitlement,
    "ledger": render_ledger,
    "audits": render_audits,
}


def format_duration(seconds: float) -> str:
    """1d 2h 3m 4s style, dropping leading zero units."""
    whole = int(max(seconds, 0))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m")]
    shown = [f"{n}{u}" for n, u in parts if n] + [f"{secs}s"]
    return " ".join(shown)
