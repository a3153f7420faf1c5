"""Entering nodes and asking them how they are, through each daemon's control socket.

A node's daemon listens on /run/rms/control.sock inside its own mount namespace; the host
reaches the same socket as /proc/<pid>/root/run/rms/control.sock, so every node is asked at
once from one process with the control API client, the very call `rms status` makes inside
the node. (Running `rms status` in every node instead costs one Python start per node per
poll, which made a 30-node `up` CPU-bound.)
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rms.config import ControlSection
from rms.control.client import ControlClient, ControlError, DaemonUnavailable
from rms.lab.layout import MIRROR, NODE, LabPaths
from rms.lab.netns import NetnsDriver
from rms.lab.procs import PROC, in_namespace, ns_id
from rms.lab.state import NodeRecord

RUNNING = "running"
SERVING = "serving"
MIRROR_PROGRAM = "vpn-discovery"
QUERY_TIMEOUT_S = 10.0
ID_SHOWN = 16


@dataclass(frozen=True)
class NodeStatus:
    """One node as `rms lab status` reports it."""

    name: str
    netns: str
    address: str
    address6: str
    pid: int | None
    alive: bool
    state: str
    node_id: str | None

    def as_json(self) -> dict[str, Any]:
        """The node as a JSON object."""
        return {
            "name": self.name,
            "namespace": self.netns,
            "address": self.address,
            "address6": self.address6,
            "pid": self.pid,
            "alive": self.alive,
            "state": self.state,
            "node_id": self.node_id,
        }


def enter_argv(paths: LabPaths, node: str, netns: NetnsDriver, wd: Path = Path("/")) -> list[str]:
    """The nsenter prefix that runs a command in a node's network and mount namespaces."""
    # Not `ip netns exec`: it would add a private mount namespace of its own (PLATFORM.md).
    net, mnt = netns.path(paths.netns(node)), paths.mnt_file(node)
    return ["nsenter", f"--net={net}", f"--mount={mnt}", f"--wd={wd}", "--"]


def rms_argv(*args: str) -> list[str]:
    """`rms …` with the interpreter running now, so a node uses the same installation."""
    return [sys.executable, "-m", "rms", *args]


def control_socket(pid: int) -> Path:
    """A node daemon's control socket as the host reaches it, through the daemon's root."""
    inside = ControlSection().socket
    return PROC / str(pid) / "root" / inside.relative_to(inside.anchor)


def interpret(answer: dict[str, Any]) -> tuple[str, str | None]:
    """(state, node_id) from a status answer; a missing state is "unknown"."""
    node_id = answer.get("node_id")
    return str(answer.get("state", "unknown")), None if node_id is None else str(node_id)


async def ask(client: ControlClient | None) -> tuple[str, str | None]:
    """Ask one daemon for its (state, node_id); "down" when there is none or it is silent."""
    if client is None:
        return "down", None
    try:
        answer = await client.status()
    except DaemonUnavailable:
        return "down", None
    except ControlError:
        return "error", None
    return interpret(answer)


async def _ask_all(clients: Sequence[ControlClient | None]) -> list[tuple[str, str | None]]:
    return list(await asyncio.gather(*(ask(c) for c in clients)))


def main_program(node: NodeRecord) -> str:
    """The program whose life is the host's: rms on a node, vpn-discovery on a mirror."""
    return MIRROR_PROGRAM if node.kind == MIRROR else "rms"


def live_pid(paths: LabPaths, node: NodeRecord, netns: NetnsDriver) -> int | None:
    """The host's main pid if that process is alive and still in the host (pids get reused)."""
    pid = node.pids.get(main_program(node))
    space = ns_id(netns.path(paths.netns(node.name)))
    return pid if pid is not None and in_namespace(pid, space) else None


def reports(
    paths: LabPaths, nodes: Sequence[NodeRecord], netns: NetnsDriver, timeout: float
) -> dict[str, dict[str, Any]]:
    """Every live node's whole `rms status` object, asked at once, by node name."""

    async def one(pid: int) -> dict[str, Any] | None:
        try:
            return await ControlClient(control_socket(pid), timeout).status()
        except (DaemonUnavailable, ControlError):
            return None

    async def every(pids: list[int]) -> list[dict[str, Any] | None]:
        return list(await asyncio.gather(*(one(p) for p in pids)))

    live = [(n.name, live_pid(paths, n, netns)) for n in nodes if n.kind == NODE]
    found = [(name, pid) for name, pid in live if pid is not None]
    answers = asyncio.run(every([pid for _, pid in found]))
    return {name: a for (name, _), a in zip(found, answers, strict=True) if a is not None}


def query(
    paths: LabPaths, nodes: Sequence[NodeRecord], netns: NetnsDriver, timeout: float
) -> list[tuple[str, str | None]]:
    """Ask every node at once for (state, node_id), each within timeout seconds."""
    pids = [live_pid(paths, n, netns) if n.kind == NODE else None for n in nodes]
    clients = [None if p is None else ControlClient(control_socket(p), timeout) for p in pids]
    answers = asyncio.run(_ask_all(clients))
    # A mirror has no control API: it serves while its process lives.
    return [
        ((SERVING if live_pid(paths, n, netns) else "down"), None) if n.kind == MIRROR else a
        for n, a in zip(nodes, answers, strict=True)
    ]


def node_statuses(
    paths: LabPaths, nodes: Sequence[NodeRecord], netns: NetnsDriver
) -> list[NodeStatus]:
    """The full status of every node: process liveness and what the node says."""
    answers = query(paths, nodes, netns, QUERY_TIMEOUT_S)
    return [
        _status(paths, node, answer, netns) for node, answer in zip(nodes, answers, strict=True)
    ]


def _status(
    paths: LabPaths, node: NodeRecord, answer: tuple[str, str | None], netns: NetnsDriver
) -> NodeStatus:
    state, node_id = answer
    alive = live_pid(paths, node, netns) is not None
    pid = node.pids.get(main_program(node))
    return NodeStatus(
        node.name, node.netns, node.address, node.address6, pid, alive, state, node_id
    )


def all_running(statuses: Sequence[NodeStatus]) -> bool:
    """Whether the lab is healthy: every host's process alive, every node's rms running."""
    return bool(statuses) and all(s.alive and s.state in (RUNNING, SERVING) for s in statuses)


def render_table(statuses: Sequence[NodeStatus]) -> str:
    """The nodes as an aligned table."""
    head = ("NODE", "NAMESPACE", "ADDRESS", "PID", "ALIVE", "STATE", "NODE_ID")
    rows = [head] + [
        (
            s.name,
            s.netns,
            s.address,
            "-" if s.pid is None else str(s.pid),
            "yes" if s.alive else "no",
            s.state,
            (s.node_id or "-")[:ID_SHOWN],
        )
        for s in statuses
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
