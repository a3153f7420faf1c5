"""Where a lab lives: names, addresses and paths, computed without touching the machine.

Addresses (docs/lab.md): the "internet" is 198.18.0.0/15, the block RFC 2544 reserves for
benchmarking, so no lab address can ever be a real host. Node k gets 198.18.0.0 + 10 + k
(node1 = 198.18.0.11, node246 = 198.18.1.0); the first ten addresses are kept for lab
services. IPv6 mirrors it in 2001:2::/48, the benchmarking prefix of RFC 5180: the node's
IPv4 address sits in the low 32 bits of 2001:2::/64 (node1 = 2001:2::c612:b).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from pathlib import Path

from rms.lab.system import LabUsageError

DEFAULT_LAB = "tclab"
DEFAULT_RUN_BASE = Path("/run/truecloud-lab")
DEFAULT_STATE_BASE = Path("/var/lib/truecloud-lab")
ENV_NAME = "RMS_LAB_NAME"
ENV_RUN_BASE = "RMS_LAB_RUN_DIR"
ENV_STATE_BASE = "RMS_LAB_STATE_DIR"

NET4 = IPv4Network("198.18.0.0/15")
NET6 = IPv6Network("2001:2::/64")
RESERVED = 10
# A Linux bridge takes at most 1024 ports (BR_MAX_PORTS); the addresses would go much further.
MAX_NODES = 1000

BRIDGE = "inet0"
NODE_IFACE = "eth0"
INET = "inet"

# No dash in a lab name, so the netns prefix "<lab>-" of one lab never matches another's.
_LAB_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_NODE_RE = re.compile(r"^node([1-9][0-9]{0,3})$")
_MIRROR_RE = re.compile(r"^mirror([1-9])$")
NODE = "node"
MIRROR = "mirror"
# Mirrors sit in the reserved addresses below the nodes': mirror k is 198.18.0.k.
MAX_MIRRORS = RESERVED - 1
DEFAULT_MIRRORS = 3


def validate_lab_name(name: str) -> str:
    """The lab name if it is usable: 1 to 12 lower-case letters and digits, a letter first."""
    if not _LAB_RE.match(name):
        raise LabUsageError(
            f"lab name {name!r} is not allowed: use 1-12 lower-case letters and digits, "
            "starting with a letter (for example tclab or test1)"
        )
    return name


def node_name(index: int) -> str:
    """The name of the index-th node (1-based)."""
    return f"node{index}"


def node_index(name: str) -> int:
    """The 1-based index of a node from its name, or LabUsageError."""
    match = _NODE_RE.match(name)
    if match is None:
        raise LabUsageError(f"{name!r} is not a node name: nodes are named node1, node2, …")
    return int(match.group(1))


def validate_host_name(name: str) -> str:
    """A node or mirror name, or LabUsageError."""
    if _NODE_RE.match(name) or _MIRROR_RE.match(name):
        return name
    raise LabUsageError(f"{name!r} is neither a node (node1, …) nor a mirror (mirror1, …)")


def validate_mirror_count(count: int) -> int:
    """The mirror count if the reserved addresses hold it."""
    if not 0 <= count <= MAX_MIRRORS:
        raise LabUsageError(f"--mirrors must be between 0 and {MAX_MIRRORS}, not {count}")
    return count


def discovery_name(lab: str) -> str:
    """The well-known name of the lab's discovery feed (.test is reserved by RFC 2606)."""
    return f"discovery.{lab}.test"


def validate_node_count(count: int) -> int:
    """The node count if the lab can hold it."""
    if not 1 <= count <= MAX_NODES:
        raise LabUsageError(f"--nodes must be between 1 and {MAX_NODES}, not {count}")
    return count


def node_address(index: int) -> IPv4Interface:
    """The node's IPv4 address on the lab internet, with the /15 prefix."""
    addr = int(NET4.network_address) + RESERVED + index
    if index < 1 or addr >= int(NET4.broadcast_address):
        raise LabUsageError(f"node{index} has no address in {NET4}")
    return IPv4Interface((addr, NET4.prefixlen))


def mirror_address(index: int) -> IPv4Interface:
    """A discovery mirror's IPv4 address, in the reserved range."""
    validate_mirror_count(index)
    return IPv4Interface((int(NET4.network_address) + index, NET4.prefixlen))


def v6_of(v4: IPv4Interface) -> IPv6Interface:
    """The IPv6 address of a lab host: its IPv4 address embedded in 2001:2::/64."""
    return IPv6Interface((int(NET6.network_address) + int(v4.ip), NET6.prefixlen))


def node_address6(index: int) -> IPv6Interface:
    """The node's IPv6 address."""
    return v6_of(node_address(index))


@dataclass(frozen=True)
class NodePlan:
    """One host (a node or a discovery mirror) as the lab will build it."""

    index: int
    name: str
    netns: str
    address: IPv4Interface
    address6: IPv6Interface
    kind: str = NODE


@dataclass(frozen=True)
class LabPaths:
    """Every name and path of one lab, from its name and two base directories."""

    name: str
    run_base: Path = DEFAULT_RUN_BASE
    state_base: Path = DEFAULT_STATE_BASE

    @property
    def run_dir(self) -> Path:
        """Runtime bookkeeping: the state file and the mount namespace files."""
        return self.run_base / self.name

    @property
    def mnt_dir(self) -> Path:
        """The directory, bind-mounted on itself and private, holding mount-ns files."""
        return self.run_dir / "mnt"

    @property
    def state_file(self) -> Path:
        """The JSON record of nodes, addresses and pids."""
        return self.run_dir / "state.json"

    @property
    def lock_file(self) -> Path:
        """Held by `up` and `down` while they change the lab."""
        return self.run_base / f"{self.name}.lock"

    @property
    def state_dir(self) -> Path:
        """The parent of the nodes' state directories (their /var/lib/rms)."""
        return self.state_base / self.name

    @property
    def inet_netns(self) -> str:
        """The network namespace holding the internet bridge."""
        return f"{self.name}-{INET}"

    def netns(self, node: str) -> str:
        """The network namespace of a node."""
        return f"{self.name}-{node}"

    def mnt_file(self, node: str) -> Path:
        """The bind-mounted file that keeps a node's mount namespace alive."""
        return self.mnt_dir / node

    def node_state_dir(self, node: str) -> Path:
        """The host directory a node sees as /var/lib/rms."""
        return self.state_dir / node

    def node_log(self, node: str, program: str) -> Path:
        """Where a node's program writes stdout and stderr."""
        return self.node_state_dir(node) / "log" / f"{program}.log"

    def owns_netns(self, netns: str) -> bool:
        """Whether a network namespace name belongs to this lab."""
        prefix = f"{self.name}-"
        if not netns.startswith(prefix):
            return False
        rest = netns[len(prefix) :]
        return (
            rest == INET or _NODE_RE.match(rest) is not None or _MIRROR_RE.match(rest) is not None
        )

    def plan(self, count: int) -> list[NodePlan]:
        """The nodes of a lab with `count` nodes."""
        validate_node_count(count)
        return [self.plan_node(i) for i in range(1, count + 1)]

    def plan_node(self, index: int) -> NodePlan:
        """One node's names and addresses."""
        name = node_name(index)
        return NodePlan(index, name, self.netns(name), node_address(index), node_address6(index))

    def plan_mirrors(self, count: int) -> list[NodePlan]:
        """The discovery mirrors of a lab with `count` mirrors."""
        validate_mirror_count(count)
        return [self.plan_mirror(i) for i in range(1, count + 1)]

    def plan_mirror(self, index: int) -> NodePlan:
        """One mirror's names and addresses."""
        name = f"{MIRROR}{index}"
        v4 = mirror_address(index)
        return NodePlan(index, name, self.netns(name), v4, v6_of(v4), MIRROR)

    def plan_host(self, name: str) -> NodePlan:
        """The plan of an existing host from its name (node or mirror)."""
        mirror = _MIRROR_RE.match(name)
        if mirror is not None:
            return self.plan_mirror(int(mirror.group(1)))
        return self.plan_node(node_index(name))

    @property
    def ca_dir(self) -> Path:
        """The lab's certificate authority (key 0600) and the mirrors' certificates."""
        return self.run_dir / "ca"

    @property
    def hosts_file(self) -> Path:
        """The /etc/hosts every lab host sees: the discovery name and every host's name."""
        return self.run_dir / "hosts"


def name_option(paths: LabPaths) -> str:
    """The ` --name X` to repeat in a suggested command, empty for the default lab."""
    return "" if paths.name == DEFAULT_LAB else f" --name {paths.name}"


def lab_paths(name: str | None, environ: Mapping[str, str] | None = None) -> LabPaths:
    """The lab's paths: name from the argument, else RMS_LAB_NAME, else tclab."""
    env = os.environ if environ is None else environ
    chosen = validate_lab_name(name or env.get(ENV_NAME) or DEFAULT_LAB)
    run_base = Path(env.get(ENV_RUN_BASE) or DEFAULT_RUN_BASE)
    state_base = Path(env.get(ENV_STATE_BASE) or DEFAULT_STATE_BASE)
    for base in (run_base, state_base):
        if not base.is_absolute():
            raise LabUsageError(f"lab base directory {base} must be an absolute path")
    return LabPaths(chosen, run_base, state_base)
