"""Build a lab: the internet namespace and bridge, then each node, then wait until all run.

Whatever happens during `up` (a failing tool, a node that never comes up, Ctrl-C, SIGTERM),
everything made so far is torn down before `up` returns; a lab left by a killed `up` is
cleaned by the next `up` or `down`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from rms.lab.ca import LabCA
from rms.lab.cloud import (
    MIRROR_CONFIG,
    NODE_CONFIG,
    Diversity,
    write_host_files,
    write_hosts,
    write_trust,
)
from rms.lab.down import Leftovers, find_leftovers, teardown
from rms.lab.layout import (
    BRIDGE,
    DEFAULT_MIRRORS,
    MIRROR,
    NET4,
    NODE,
    LabPaths,
    NodePlan,
    name_option,
    validate_node_count,
)
from rms.lab.mounts import MountDriver
from rms.lab.netns import NetnsDriver
from rms.lab.procs import NsId, exit_status, in_namespace, ns_id, spawn_detached, stop_all
from rms.lab.state import BUILDING, UP, LabLock, LabRecord, NodeRecord, load, save
from rms.lab.status import MIRROR_PROGRAM, RUNNING, enter_argv, query, rms_argv
from rms.lab.storage import storage_programs
from rms.lab.system import LabError, node_environ, tool_path

READY_TIMEOUT_S = 30.0
POLL_S = 0.2
QUERY_TIMEOUT_S = 5.0
LOG_TAIL_LINES = 12

Say = Callable[[str], None]


@dataclass(frozen=True)
class Program:
    """A process every node runs; later issues add wireguard-go, tgtd, zfs-fuse…"""

    name: str
    argv: tuple[str, ...]


def node_programs(kind: str = NODE) -> list[Program]:
    """The programs started in every host of this kind, in start order."""
    if kind == MIRROR:
        serve = ("-m", "vpn_discovery", "serve", "--config", str(MIRROR_CONFIG))
        return [Program(MIRROR_PROGRAM, (sys.executable, *serve))]
    return [Program("rms", (*rms_argv("run"), "--config", str(NODE_CONFIG)))]


@dataclass(frozen=True)
class Lab:
    """One lab and the drivers that change the machine for it."""

    paths: LabPaths
    netns: NetnsDriver
    mounts: MountDriver
    say: Say


def ready_timeout(count: int) -> float:
    """The default wait for readiness: every daemon starts a Python, and there are 2 cores."""
    return READY_TIMEOUT_S + count


def up(
    lab: Lab,
    count: int,
    timeout: float | None = None,
    mirrors: int = DEFAULT_MIRRORS,
    spread: Diversity | None = None,
) -> LabRecord:
    """Build the lab with count nodes and its mirrors, and wait until each node runs."""
    plan = [*lab.paths.plan_mirrors(mirrors), *lab.paths.plan(count)]
    timeout = ready_timeout(count) if timeout is None else timeout
    with LabLock(lab.paths.lock_file, lab.paths.name) as lock:
        clear_stale(lab)
        try:
            with interrupt_on_term():
                return build(lab, plan, timeout, spread or Diversity())
        except LabError as e:
            raise LabError(f"{e}\n{undo(lab, lock)}") from e
        except BaseException:
            lab.say(undo(lab, lock))
            raise


def add(lab: Lab, count: int, timeout: float | None = None) -> LabRecord:
    """Add count nodes to a lab that is up, as new volunteers joining the cloud would."""
    paths = lab.paths
    with LabLock(paths.lock_file, paths.name):
        record = load(paths.state_file)
        if record is None or record.phase != UP:
            raise LabError(f"lab {paths.name} is not up; start it with `rms lab up`")
        first = 1 + max((int(n.name[4:]) for n in record.nodes if n.kind == NODE), default=0)
        plan = [paths.plan_node(i) for i in range(first, first + count)]
        hosts = [paths.plan_host(n.name) for n in record.nodes] + plan
        validate_node_count(len([h for h in hosts if h.kind == NODE]))
        write_hosts(paths, hosts)
        ca = LabCA.load(paths.ca_dir)
        mirrors = [h for h in hosts if h.kind == MIRROR]
        for node in plan:
            paths.node_state_dir(node.name).mkdir(mode=0o700, parents=True, exist_ok=True)
            write_host_files(paths, node, mirrors, ca, Diversity(record.locations, record.networks))
            record = record.with_node(build_node(lab, node))
            save(paths.state_file, record)
            lab.say(f"{node.name} {node.address.ip} added (pid {record.nodes[-1].pids['rms']})")
        new = {n.name for n in plan}
        added = replace(record, nodes=tuple(n for n in record.nodes if n.name in new))
        wait_ready(lab, added, ready_timeout(count) if timeout is None else timeout)
        record = start_storage(lab, record, new)
        save(paths.state_file, record)
        return record


def restart(lab: Lab, host: str, *, hard: bool = False, timeout: float = 30.0) -> NodeRecord:
    """Stop a host's main program (SIGTERM, or SIGKILL when hard) and start it again.

    Only that process goes: what it started and left running (wireguard-go interfaces) stays,
    as on a real machine whose agent restarts.
    """
    paths = lab.paths
    with LabLock(paths.lock_file, paths.name):
        record = load(paths.state_file)
        node = None if record is None else record.node(host)
        if record is None or node is None:
            raise LabError(f"lab {paths.name} has no host {host}")
        program = next(p for p in node_programs(node.kind) if p.name in node.pids)
        pid = node.pids[program.name]
        _stop_one(pid, ns_id(lab.netns.path(node.netns)), hard)
        fresh = replace(node, pids={**node.pids, program.name: start_program(lab, host, program)})
        record = record.with_node(fresh)
        save(paths.state_file, record)
    lab.say(f"{host}: {program.name} restarted (pid {fresh.pids[program.name]})")
    if fresh.kind == NODE:
        wait_ready(lab, replace(record, nodes=(fresh,)), timeout)
    return fresh


def _stop_one(pid: int, namespace: NsId | None, hard: bool) -> None:
    def alive() -> list[int]:
        # Not our child (an earlier `up` started it): ask /proc, which also rules out a
        # reused pid outside the node.
        exit_status(pid)
        return [pid] if in_namespace(pid, namespace) else []

    if hard:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stop_all(alive, grace_s=10.0)


def clear_stale(lab: Lab) -> None:
    """Refuse if the lab is up; clean what an interrupted run left behind, saying so."""
    left = find_leftovers(lab.paths, lab.netns)
    if left.empty:
        return
    record = _readable_record(lab)
    if record is not None and record.phase == UP and _complete(lab, record, left):
        opt = name_option(lab.paths)
        raise LabError(
            f"lab {lab.paths.name} is already up with {len(record.nodes)} nodes; "
            f"see `rms lab status{opt}`, or run `rms lab down{opt}` first"
        )
    lab.say(f"lab {lab.paths.name}: found {left.describe()} left behind; cleaning up first")
    done = teardown(lab.paths, lab.netns, lab.mounts)
    if done.problems:
        raise LabError("could not clean the old lab: " + "; ".join(done.problems))
    lab.say(f"lab {lab.paths.name}: old lab removed ({done.describe()})")


def _readable_record(lab: Lab) -> LabRecord | None:
    """The state record, or None when it is missing or damaged (a stale lab either way)."""
    try:
        return load(lab.paths.state_file)
    except LabError:
        return None


def _complete(lab: Lab, record: LabRecord, left: Leftovers) -> bool:
    """Whether every namespace the record names still exists."""
    wanted = {lab.paths.inet_netns} | {n.netns for n in record.nodes}
    return wanted <= set(left.netns)


def build(lab: Lab, plan: Sequence[NodePlan], timeout: float, spread: Diversity) -> LabRecord:
    """Make the internet, every node, then wait for them; returns the final record."""
    started = time.monotonic()
    paths = lab.paths
    nodes = [h for h in plan if h.kind == NODE]
    lab.say(
        f"lab {paths.name}: building {len(nodes)} nodes and {len(plan) - len(nodes)} "
        f"discovery mirrors on {NET4} (bridge {BRIDGE} in netns {paths.inet_netns})"
    )
    record = LabRecord(paths.name, BUILDING, (), time.time(), spread.locations, spread.networks)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    save(paths.state_file, record)
    lab.mounts.make_private_dir(paths.mnt_dir)
    lab.netns.add(paths.inet_netns)
    lab.netns.add_bridge(paths.inet_netns)
    for host in plan:
        paths.node_state_dir(host.name).mkdir(mode=0o700, parents=True, exist_ok=True)
    write_trust(paths, plan, spread)
    for host in plan:
        record = record.with_node(build_node(lab, host))
        save(paths.state_file, record)
        pid = next(iter(record.nodes[-1].pids.values()))
        total = len(nodes) if host.kind == NODE else len(plan) - len(nodes)
        lab.say(f"[{host.index}/{total}] {host.name} {host.address.ip} started (pid {pid})")
    wait_ready(lab, record, timeout)
    record = start_storage(lab, record)
    record = replace(record, phase=UP)
    save(paths.state_file, record)
    lab.say(
        f"lab {paths.name} is up: {len(nodes)} nodes running, built in "
        f"{time.monotonic() - started:.1f} s"
    )
    lab.say(next_steps(lab))
    return record


def build_node(lab: Lab, node: NodePlan) -> NodeRecord:
    """Make one node's namespaces, links and state, and start its programs."""
    paths = lab.paths
    lab.netns.add(node.netns)
    lab.netns.connect(paths.inet_netns, node)
    state_dir = paths.node_state_dir(node.name)
    lab.mounts.create_node_namespace(
        paths.mnt_file(node.name), lab.netns.path(node.netns), state_dir, paths.hosts_file
    )
    pids = {p.name: start_program(lab, node.name, p) for p in node_programs(node.kind)}
    v4, v6 = str(node.address.ip), str(node.address6.ip)
    return NodeRecord(node.name, node.netns, v4, v6, pids, node.kind)


def start_storage(lab: Lab, record: LabRecord, only: set[str] | None = None) -> LabRecord:
    """Start the nodes' storage programs (rms.lab.storage) once their RMS runs."""
    nodes = []
    for n in record.nodes:
        wanted = storage_programs(n.name, n.kind) if only is None or n.name in only else []
        pids = {name: start_program(lab, n.name, Program(name, argv)) for name, argv in wanted}
        nodes.append(replace(n, pids={**n.pids, **pids}))
    return replace(record, nodes=tuple(nodes))


def start_program(lab: Lab, node: str, program: Program) -> int:
    """Start one program inside a node, detached, logging to the node's log directory."""
    argv = enter_argv(lab.paths, node, lab.netns)
    argv[0] = tool_path(argv[0])
    env = node_environ(os.environ, strip_rms=True)
    return spawn_detached([*argv, *program.argv], lab.paths.node_log(node, program.name), env)


def wait_ready(lab: Lab, record: LabRecord, timeout: float) -> None:
    """Wait until every node reports running; fail early when any program exits."""
    nodes = [n for n in record.nodes if n.kind == NODE]
    total, deadline = len(nodes), time.monotonic() + timeout
    lab.say(f"waiting up to {timeout:g} s for every node to report running")
    states = {n.name: "not asked yet" for n in nodes}
    pending = list(nodes)
    while pending:
        _check_alive(lab, record.nodes)
        left = deadline - time.monotonic()
        if left <= 0:
            raise LabError(_not_ready(lab, pending, states, timeout))
        answers = query(lab.paths, pending, lab.netns, min(QUERY_TIMEOUT_S, left))
        for node, (state, node_id) in zip(list(pending), answers, strict=True):
            states[node.name] = state
            if state == RUNNING:
                pending.remove(node)
                shown = (node_id or "?")[:16]
                lab.say(f"[{total - len(pending)}/{total}] {node.name} running, node_id {shown}")
        if pending:
            time.sleep(POLL_S)


def _check_alive(lab: Lab, nodes: Sequence[NodeRecord]) -> None:
    for node in nodes:
        for program, pid in node.pids.items():
            code = exit_status(pid)
            if code is not None:
                raise LabError(
                    f"{node.name}: `{program}` exited with code {code} before it was ready\n"
                    + log_tail(lab, node.name, program)
                )


def _not_ready(
    lab: Lab, pending: Sequence[NodeRecord], states: dict[str, str], timeout: float
) -> str:
    names = ", ".join(f"{n.name} ({states[n.name]})" for n in pending)
    tails = "\n".join(log_tail(lab, n.name, "rms") for n in pending[:3])
    return f"not running after {timeout:g} s: {names}\n{tails}"


def log_tail(lab: Lab, node: str, program: str) -> str:
    """The last lines of a node program's log, indented, to show with an error."""
    log = lab.paths.node_log(node, program)
    try:
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        return f"  (no log at {log})"
    shown = "\n".join(f"  | {line}" for line in lines) or "  | (empty)"
    return f"  last lines of {log}:\n{shown}"


def undo(lab: Lab, lock: LabLock) -> str:
    """Tear down what a failed or interrupted `up` made; a second Ctrl-C cannot stop it."""
    name = lab.paths.name
    lab.say(f"lab {name}: removing what was made")
    with ignore_interrupts():
        done = teardown(lab.paths, lab.netns, lab.mounts)
    if done.problems:
        problems = "; ".join(done.problems)
        return f"lab {name} was not built and teardown left something: {problems}"
    lock.remove()
    lab.say(f"lab {name}: removed ({done.describe()})")
    return f"lab {name} was not built; nothing was left behind"


def rms_invocation() -> str:
    """`rms` when the PATH finds this very program, else the path it was started by."""
    started = Path(sys.argv[0])
    found = shutil.which("rms")
    if started.name != "rms" or (found and Path(found).resolve() == started.resolve()):
        return "rms"
    try:
        return str(started.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(started)


def next_steps(lab: Lab) -> str:
    """What a person can do with the lab now, spelled so that it runs from here."""
    opt = name_option(lab.paths)
    rms = rms_invocation()
    rows = [
        (f"{rms} lab status{opt}", "list the nodes and their state"),
        (f"{rms} lab exec{opt} node1 -- rms status", "run a command inside node1"),
        (f"{rms} lab down{opt}", "stop and remove everything"),
    ]
    width = max(len(c) for c, _ in rows)
    return "next:\n" + "\n".join(f"  {c.ljust(width)}   {why}" for c, why in rows)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def interrupt_on_term() -> Iterator[None]:
    """Treat SIGINT and SIGTERM as Ctrl-C while building, so both tear down what was made.

    SIGINT too, because a shell starts background jobs with SIGINT ignored, and an `up`
    interrupted there must still clean up.
    """
    old = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextmanager
def ignore_interrupts() -> Iterator[None]:
    """Ignore SIGINT, SIGTERM and SIGHUP for the duration (teardown must finish)."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
