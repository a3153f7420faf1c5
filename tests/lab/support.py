"""Helpers the lab tests share: the CLI, the leftovers check, fresh lab names."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rms.control.client import ControlClient, ControlError, DaemonUnavailable
from rms.lab.layout import lab_paths
from rms.lab.mounts import read_mount_points, under
from rms.lab.netns import NETNS_DIR
from rms.lab.procs import NsId, nsfs_id, pids_in
from rms.lab.status import control_socket


def rms(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the `rms` CLI of this checkout."""
    return subprocess.run(
        [sys.executable, "-m", "rms", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
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
    _, lab_status = status_json(name)
    nodes = [n for n in lab_status["nodes"] if n["alive"] and n["pid"]]

    async def ask(pid: int) -> dict[str, Any] | None:
        try:
            return await ControlClient(control_socket(pid), 10).status()
        except (DaemonUnavailable, ControlError):
            return None

    async def ask_all() -> list[dict[str, Any] | None]:
        return list(await asyncio.gather(*(ask(n["pid"]) for n in nodes)))

    answers = asyncio.run(ask_all())
    return {n["name"]: a for n, a in zip(nodes, answers, strict=True) if a is not None}
