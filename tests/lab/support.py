"""Helpers the lab tests share: the CLI, the leftovers check, fresh lab names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rms.lab.layout import lab_paths
from rms.lab.mounts import read_mount_points, under
from rms.lab.netns import NETNS_DIR, NetnsDriver
from rms.lab.procs import NsId, nsfs_id, pids_in
from rms.lab.state import load
from rms.lab.status import reports


def rms(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the `rms` CLI of this checkout."""
    # Lab tests of VPNs, the DHT or entitlement run without the storage services (node1's CFS
    # broadcasts its own requests); a storage test sets RMS_LAB_STORAGE=1 (rms/lab/storage.py).
    env = {**os.environ, "RMS_LAB_STORAGE": os.environ.get("RMS_LAB_STORAGE", "0")}
    return subprocess.run(
        [sys.executable, "-m", "rms", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def lab(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`rms lab SUBCOMMAND --name NAME ARGS…`."""
    return rms("lab", args[0], "--name", name, *args[1:])


def namespaces_of(name: str) -> set[NsId]:
    """Identities of the lab's network and mount namespaces that exist now."""
    paths = lab_paths(name)
    files = [NETNS_DIR / n for n in os.listdir(NETNS_DIR) if paths.owns_netns(n)]
    if paths.mnt_dir.is_dir():
        files += list(paths.mnt_dir.iterdir())
    return {i for i in map(nsfs_id, files) if i is not None}


def assert_clean(name: str, seen: set[NsId], pids: list[int]) -> None:
    """Nothing of the lab is left: namespace, bridge, mount, process or directory."""
    paths = lab_paths(name)
    netns = [n for n in os.listdir(NETNS_DIR) if n.startswith(f"{name}-")]
    assert netns == [], f"namespaces left: {netns}"
    mounts = under(read_mount_points(), [paths.run_dir, paths.state_dir])
    assert mounts == [], f"mounts left: {mounts}"
    assert pids_in(seen) == [], "processes left in the lab's namespaces"
    assert [p for p in pids if Path(f"/proc/{p}/ns/net").exists()] == []
    for left in (paths.run_dir, paths.state_dir, paths.lock_file):
        assert not left.exists(), f"{left} left behind"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    root_links = links.stdout
    assert "inet0" not in root_links


def status_json(name: str) -> tuple[int, dict[str, Any]]:
    done = lab(name, "status", "--json")
    return done.returncode, json.loads(done.stdout)


def node_statuses(name: str) -> dict[str, dict[str, Any]]:
    """Every live node's `rms status` object, asked through its control socket at once."""
    paths = lab_paths(name)
    record = load(paths.state_file)
    if record is None:
        return {}
    return reports(paths, record.nodes, NetnsDriver(), 10.0)
