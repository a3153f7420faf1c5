"""Network namespaces, the internet bridge and the nodes' links, driven through iproute2.

The lab talks to iproute2 only through `NetnsDriver`; the driver creates and deletes what it
is asked to and nothing else. iproute2 rather than pyroute2: the same commands a person
types to look at the lab (`ip -n tclab-node1 addr`), one batch per namespace, and no library
state shared between namespaces. Nothing is ever created in the host's root namespace: the
veth pair is made inside the internet namespace and its node end moved straight into the
node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rms.lab.layout import BRIDGE, NODE_IFACE, NodePlan
from rms.lab.system import LabError, run_tool

# Where `ip netns add` binds its namespace files (iproute2's NETNS_RUN_DIR).
NETNS_DIR = Path("/run/netns")


@dataclass(frozen=True)
class NetnsDriver:
    """Create and remove the lab's network namespaces and links with `ip`."""

    ip: str = "ip"
    netns_dir: Path = NETNS_DIR

    def path(self, netns: str) -> Path:
        """The file that names a network namespace, for nsenter --net."""
        return self.netns_dir / netns

    def list(self) -> list[str]:
        """Every named network namespace on the machine."""
        try:
            return sorted(p.name for p in self.netns_dir.iterdir())
        except FileNotFoundError:
            return []
        except OSError as e:
            raise LabError(f"cannot list {self.netns_dir}: {e.strerror}") from e

    def add(self, netns: str) -> None:
        """Create a network namespace with its loopback up."""
        run_tool([self.ip, "netns", "add", netns])
        self._batch(netns, ["link set lo up"])

    def delete(self, netns: str) -> None:
        """Delete a network namespace; its links (veths, the bridge) go with it."""
        if self.path(netns).exists():
            run_tool([self.ip, "netns", "delete", netns])

    def add_bridge(self, netns: str) -> None:
        """Create the internet bridge: no STP delay, multicast flooded like a hub."""
        self._batch(
            netns,
            [
                f"link add {BRIDGE} type bridge stp_state 0 forward_delay 0 mcast_snooping 0",
                f"link set {BRIDGE} up",
            ],
        )

    def connect(self, inet_netns: str, node: NodePlan) -> None:
        """Give a node its eth0 on the bridge, its IPv4 and IPv6 addresses, and bring it up."""
        # The inet end is named after the node, so `ip -n <lab>-inet link` reads as a map.
        self._batch(
            inet_netns,
            [
                f"link add {node.name} type veth peer name {NODE_IFACE} netns {node.netns}",
                f"link set {node.name} master {BRIDGE} up",
            ],
        )
        self._batch(
            node.netns,
            [
                f"addr add {node.address} dev {NODE_IFACE}",
                # nodad: the address is usable at once instead of after duplicate detection.
                f"addr add {node.address6} dev {NODE_IFACE} nodad",
                f"link set {NODE_IFACE} up",
            ],
        )

    def _batch(self, netns: str, commands: Sequence[str]) -> None:
        """Run several `ip` commands in one namespace with one process."""
        run_tool([self.ip, "-n", netns, "-batch", "-"], stdin="\n".join(commands) + "\n")
