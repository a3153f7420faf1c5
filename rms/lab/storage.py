"""The storage part of the lab (issue 5): every node a Volume Provider, node1 a CFS consumer.

Every node runs `volume-provider run` (which starts its own tgtd); node1 also runs
zfs-fuse and `cfs run`, so the demo shows a live pool in `rms lab exec node1 -- rms
status`. They start once the node's RMS runs (they sign with its node key and talk to its
control socket). Their configs sit next to the node's rms.toml in its state directory, with
the node's own location and network, so placement sees the lab's diversity.

A pool needs 8 providers with distinct locations and networks besides node1: a lab of at
least 9 nodes with `--locations` and `--networks` of 9 or more. A smaller lab still runs the
CFS, and its `pool` status section says why no pool could be built.

The lab runs no module of the services (rms imports none of them): they are started as
programs. `RMS_LAB_STORAGE=0` leaves them out (labs that test something else).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from rms.lab.layout import NODE, NodePlan

HOST_STATE = Path("/var/lib/rms")  # the node's state dir as the node sees it
PROVIDER_CONFIG = HOST_STATE / "volume-provider.toml"
CFS_CONFIG = HOST_STATE / "cfs.toml"
CFS_NODES = ("node1",)
# A small entitlement keeps the lab's pool quick to build and resilver: 8 volumes of 128 MiB.
ENTITLEMENT = "640 MiB"
PROVIDER_CAPACITY_MIB = 2048
LEASE_S = 120
PROVIDER_WG_PORT = 52400


def enabled() -> bool:
    """Whether lab nodes run the storage services (`RMS_LAB_STORAGE=0` turns them off)."""
    return os.environ.get("RMS_LAB_STORAGE", "1") != "0"


def locality(node: NodePlan, locations: int, networks: int) -> tuple[str, str]:
    """The node's location and network names, as its rms.toml has them."""
    index = node.index - 1
    return f"lab-location-{index % locations}", f"lab-network-{index % networks}"


def provider_config(node: NodePlan, locations: int, networks: int) -> str:
    """The volume-provider.toml of a lab node."""
    location, network = locality(node, locations, networks)
    return (
        "[provider]\n"
        f'data_dir = "{HOST_STATE / "volumes"}"\n'
        f'lease_file = "{HOST_STATE / "volume-leases.bin"}"\n'
        f"capacity_mib = {PROVIDER_CAPACITY_MIB}\n"
        f'location = "{location}"\nnetwork = "{network}"\n'
        f"lease_s = {LEASE_S}\n"
        # Clear of the RMS's guest ports (51900+) and of the CFS's nested links (52000+).
        f"wg_port_first = {PROVIDER_WG_PORT}\n"
        "\n[tgt]\n"
        f'log_dir = "{HOST_STATE / "log"}"\n'
        '\n[log]\nformat = "json"\n'
    )


def cfs_config(node: NodePlan, locations: int, networks: int) -> str:
    """The cfs.toml of a lab CFS node: the pool lives under the node's private /run."""
    location, network = locality(node, locations, networks)
    return (
        "[cfs]\n"
        f'entitlement = "{ENTITLEMENT}"\n'
        'mountpoint = "/run/cfs/pool"\nrun_dir = "/run/cfs"\n'
        f'state_file = "{HOST_STATE / "cfs-leases.json"}"\n'  # the node's own, gone at down
        # The lab's nodes share 198.18.0.0/24; their network names stand for the networks.
        "distinct_blocks = false\n"
        f'location = "{location}"\nnetwork = "{network}"\n'
        "\n[healing]\npoll_s = 2.0\nrenew_margin_s = 30.0\n"
        '\n[log]\nformat = "json"\n'
    )


def write_storage_files(state: Path, node: NodePlan, locations: int, networks: int) -> None:
    """The node's storage configs, in its state directory."""
    (state / PROVIDER_CONFIG.name).write_text(provider_config(node, locations, networks))
    if node.name in CFS_NODES:
        (state / CFS_CONFIG.name).write_text(cfs_config(node, locations, networks))


def storage_programs(node: str, kind: str) -> list[tuple[str, tuple[str, ...]]]:
    """(name, argv) of the storage programs of a node, in start order; none when disabled."""
    if kind != NODE or not enabled() or shutil.which("tgtd") is None:
        return []  # without tgt (scripts/dev.sh installs it) a lab has no storage
    python = sys.executable
    provider = (python, "-m", "volume_provider", "run", "--config", str(PROVIDER_CONFIG))
    programs: list[tuple[str, tuple[str, ...]]] = [("volume-provider", provider)]
    zfs_fuse = shutil.which("zfs-fuse")
    if node in CFS_NODES and zfs_fuse is not None:
        programs.append(("zfs-fuse", (zfs_fuse, "--no-daemon")))
        programs.append(("cfs", (python, "-m", "cfs", "run", "--config", str(CFS_CONFIG))))
    return programs
