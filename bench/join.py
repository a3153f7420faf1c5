"""Join bench: from the first feed fetch to the first handshake on the management VPN.

Builds a lab of 12 nodes and 3 discovery mirrors (as root), lets every node join through
the feed as a real node would, and reads each join's trace from the nodes' own status:
seconds from the feed fetch to the first WireGuard handshake on the new VPN, admission
attempts, and the control traffic of the join (bytes over the guest link, WireGuard
overhead included). The baseline, measured in the same run on the same lab, is a bare
WireGuard link made by hand between two nodes (wireguard-go, `wg set`, addresses, link up)
up to its first handshake: the ratio says what discovery and admission add on top of the
tunnel itself. It never fails on a figure; its last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from typing import Any

from rms.lab.layout import lab_paths
from rms.lab.netns import NETNS_DIR, NetnsDriver
from rms.lab.state import load
from rms.lab.status import reports

CONVERGE_S = 240.0
BASELINE_ROUNDS = 5
WG_ENV = "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1"


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def lab(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`rms lab SUBCOMMAND --name NAME ARGS…` of this checkout."""
    argv = [sys.executable, "-m", "rms", "lab", args[0], "--name", name, *args[1:]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


def node_statuses(name: str) -> dict[str, dict[str, Any]]:
    """Every live node's status, through the control sockets."""
    paths = lab_paths(name)
    record = load(paths.state_file)
    return {} if record is None else reports(paths, record.nodes, NetnsDriver(), 10.0)


def in_node(name: str, node: str, script: str) -> subprocess.CompletedProcess[str]:
    """Run a shell script in a node's namespaces, without starting a Python."""
    paths = lab_paths(name)
    argv = ["nsenter", f"--net={NETNS_DIR / paths.netns(node)}", f"--mount={paths.mnt_file(node)}"]
    return subprocess.run(
        [*argv, "--", "sh", "-c", script], capture_output=True, text=True, check=False
    )


def wg_side(iface: str, key: str, port: int, peer: str, mine: str, theirs: str, far: str) -> str:
    """Shell lines that make one end of a bare WireGuard link."""
    return (
        f"echo {key} > /run/{iface}.key && {WG_ENV} wireguard-go {iface} && "
        f"wg set {iface} private-key /run/{iface}.key listen-port {port} "
        f"peer {peer} allowed-ips {theirs}/128 endpoint {far}:{port} && "
        f"ip -6 addr add {mine}/64 dev {iface} nodad && ip link set {iface} up"
    )


def keypair() -> tuple[str, str]:
    """A WireGuard key pair from `wg genkey` / `wg pubkey`."""
    private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True)
    public = subprocess.run(
        ["wg", "pubkey"], input=private.stdout, capture_output=True, text=True, check=True
    )
    return private.stdout.strip(), public.stdout.strip()


def bare_link_s(name: str, round_no: int) -> float:
    """Seconds from nothing to the first handshake of a hand-made link node1 <-> node2."""
    (k1, p1), (k2, p2) = keypair(), keypair()
    iface, port = f"bwg{round_no}", 52100 + round_no
    a, b = "fd00:bb::1", "fd00:bb::2"
    start = time.monotonic()
    in_node(name, "node2", wg_side(iface, k2, port, p1, b, a, "198.18.0.11"))
    in_node(name, "node1", wg_side(iface, k1, port, p2, a, b, "198.18.0.12"))
    wait = (
        f"for i in $(seq 1 500); do "
        f"(echo x > /dev/udp/{b}/9) 2>/dev/null; "
        f"t=$(wg show {iface} latest-handshakes | cut -f2); "
        f'[ "${{t:-0}}" != 0 ] && exit 0; sleep 0.01; done; exit 1'
    )
    done = in_node(name, "node1", f"exec bash -c '{wait}'")
    took = time.monotonic() - start
    for node in ("node1", "node2"):
        in_node(name, node, f"ip link del {iface}")
    return took if done.returncode == 0 else float("nan")


def collect_joins(name: str, nodes: int) -> list[dict[str, Any]]:
    """Every join trace of every node, once all nodes are in 2 VPNs."""
    deadline = time.monotonic() + CONVERGE_S
    while time.monotonic() < deadline:
        statuses = node_statuses(name)
        if len(statuses) == nodes and all(len(s["vpns"]) >= 2 for s in statuses.values()):
            return [j for s in statuses.values() for j in s["vpn_joins"]["joins"]]
        time.sleep(1)
    raise SystemExit(f"the lab did not converge in {CONVERGE_S:g} s")


def run(nodes: int) -> dict[str, Any]:
    """Build the lab, measure, tear down; the figures."""
    name = "bj" + secrets.token_hex(3)
    try:
        up = lab(name, "up", "--nodes", str(nodes), "--mirrors", "3")
        if up.returncode != 0:
            raise SystemExit(up.stdout + up.stderr)
        joins = collect_joins(name, nodes)
        baseline = [bare_link_s(name, i) for i in range(BASELINE_ROUNDS)]
    finally:
        lab(name, "down")
    times = [float(j["first_handshake_s"]) for j in joins if j["first_handshake_s"] is not None]
    base = [b for b in baseline if b == b]
    return {
        "bench": "join",
        "nodes": nodes,
        "joins": len(times),
        "p50_s": round(percentile(times, 0.5), 4),
        "p95_s": round(percentile(times, 0.95), 4),
        "baseline_p50_s": round(percentile(base, 0.5), 4),
        "ratio_p50": round(percentile(times, 0.5) / percentile(base, 0.5), 2),
        "attempts_mean": round(statistics.fmean(j["attempts"] for j in joins), 2),
        "guest_bytes_p50": int(percentile([float(j["guest_bytes"]) for j in joins], 0.5)),
        "guest_bytes_p95": int(percentile([float(j["guest_bytes"]) for j in joins], 0.95)),
    }


def main() -> int:
    """Parse arguments, run, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=12)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/join.py builds a lab: run it as root", file=sys.stderr)
        return 2
    r = run(args.nodes)
    print(f"join bench: {r['nodes']} nodes, 3 mirrors, {r['joins']} joins through the feed")
    print(f"  feed fetch -> first handshake   p50 {r['p50_s']:.3f} s   p95 {r['p95_s']:.3f} s")
    print(f"  bare WireGuard link by hand     p50 {r['baseline_p50_s']:.3f} s (baseline)")
    print(f"  ratio (p50)                     {r['ratio_p50']}")
    print(f"  admission attempts per join     {r['attempts_mean']} on average")
    print(
        f"  guest-link bytes per join       p50 {r['guest_bytes_p50']}  p95 {r['guest_bytes_p95']}"
    )
    print(json.dumps(r, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
