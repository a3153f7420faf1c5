"""`rms lab loss NODE PERCENT`: drop a share of a node's incoming packets, at random.

The lab has no netem (PLATFORM.md), so loss comes from nftables in the node's network
namespace: one table, `truecloud_loss`, whose input chain drops `PERCENT` % of the packets
arriving on the node's link to the internet (`eth0`), chosen by `numgen random mod 100`.
Only `eth0`: a WireGuard datagram is counted once, as the encrypted packet that crosses the
internet, and not a second time when its decrypted payload arrives on the VPN interface.
So every protocol of the node sees the same loss on every path, as on a bad uplink.

Setting it is idempotent: the script declares the table, deletes it and makes it again, in
one atomic `nft -f` transaction, so `loss node3 5` twice leaves one rule and `loss node3 0`
leaves no table. The table lives in the node's namespace, so `rms lab down` removes it with
the namespace.
"""

from __future__ import annotations

import argparse
from typing import Any

from rms.lab.layout import NODE_IFACE, lab_paths, name_option, node_index
from rms.lab.netns import NetnsDriver
from rms.lab.state import load
from rms.lab.system import EXIT_OK, LabError, LabUsageError, require_root, run_tool

__all__ = ["TABLE", "handle_loss", "loss_script", "register", "set_loss"]

TABLE = "truecloud_loss"
PRIORITY = -300  # before anything else in the input path (conntrack's raw priority)


def loss_script(percent: int) -> str:
    """The `nft -f` script that gives a node `percent` % random loss (0: none)."""
    if not 0 <= percent <= 100:
        raise LabUsageError(f"loss is a whole percentage from 0 to 100, not {percent}")
    lines = [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}"]
    if percent:
        lines += [
            f"table inet {TABLE} {{",
            "  chain input {",
            f"    type filter hook input priority {PRIORITY}; policy accept;",
            f'    iifname "{NODE_IFACE}" numgen random mod 100 < {percent} counter drop',
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def set_loss(netns_path: str, percent: int, nft: str = "nft") -> None:
    """Apply `percent` % loss inside the network namespace at `netns_path`."""
    run_tool(["nsenter", f"--net={netns_path}", "--", nft, "-f", "-"], stdin=loss_script(percent))


def register(labsub: Any, common: argparse.ArgumentParser, guarded: Any) -> None:
    """Add `rms lab loss` to the lab's subcommands."""
    p = labsub.add_parser(
        "loss", parents=[common], help="drop PERCENT % of a node's incoming packets (0: none)"
    )
    p.add_argument("node", help="node1, node2, …")
    p.add_argument("percent", type=_percent, help="0 to 100")
    p.set_defaults(handler=guarded(handle_loss))


def _percent(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("the loss is a percentage from 0 to 100")
    return value


def handle_loss(args: argparse.Namespace) -> int:
    """Set the loss of one node of a lab that is up."""
    paths = lab_paths(args.name)
    node_index(args.node)  # a node name, or LabUsageError
    require_root()
    netns = NetnsDriver()
    record = load(paths.state_file)
    path = netns.path(paths.netns(args.node))
    if record is None or record.node(args.node) is None or not path.exists():
        raise LabError(
            f"lab {paths.name} has no node {args.node}; see `rms lab status{name_option(paths)}`"
        )
    set_loss(str(path), args.percent)
    said = f"drops {args.percent} % of its incoming packets" if args.percent else "has no loss"
    print(f"{args.node} {said}")
    return EXIT_OK
