"""`rms lab up|status|exec|down`: the internet on one machine, for tests and the first demo.

Exit codes (STYLE.md 11): 0 success; 1 the lab (or a node) is absent, down or could not be
built; 2 misuse (bad name, not root, missing tools); 130 interrupted. `lab exec` passes the
command's own exit code through.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rms.lab import loss as loss_cmd
from rms.lab.cloud import LOCATIONS, NETWORKS, Diversity
from rms.lab.down import find_leftovers, teardown
from rms.lab.layout import (
    DEFAULT_LAB,
    DEFAULT_MIRRORS,
    ENV_NAME,
    MIRROR,
    LabPaths,
    lab_paths,
    name_option,
    validate_host_name,
)
from rms.lab.mounts import MountDriver
from rms.lab.netns import NetnsDriver
from rms.lab.nodeinit import PRIVATE_PATHS
from rms.lab.state import ABSENT, BUILDING, STALE, UP, LabLock, LabRecord, load, lock_held
from rms.lab.status import all_running, enter_argv, node_statuses, render_table
from rms.lab.system import (
    EXIT_DOWN,
    EXIT_INTERRUPTED,
    EXIT_OK,
    LabError,
    node_environ,
    require_root,
    require_tools,
    tool_path,
)
from rms.lab.up import Lab, add, restart, up

Handler = Callable[[argparse.Namespace], int]


def register(sub: Any) -> None:
    """Add `rms lab` and its subcommands to the command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--name",
        help=f"lab name (default ${ENV_NAME} or {DEFAULT_LAB}); tests use their own",
    )
    lab: argparse.ArgumentParser = sub.add_parser(
        "lab", help="the local lab: one namespace per node on a bridge playing the internet"
    )
    labsub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", required=True)
    p = labsub.add_parser("up", parents=[common], help="build the lab and start every node")
    p.add_argument("--nodes", type=int, default=6, help="number of nodes (default 6)")
    p.add_argument(
        "--mirrors",
        type=int,
        default=DEFAULT_MIRRORS,
        help=f"number of discovery mirrors (default {DEFAULT_MIRRORS})",
    )
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds to wait for every node to report running (default 30 + 1 per node)",
    )
    p.add_argument(
        "--locations", type=int, default=LOCATIONS, help="locations nodes are spread over"
    )
    p.add_argument("--networks", type=int, default=NETWORKS, help="networks nodes are spread over")
    p.set_defaults(handler=_guarded(handle_up))
    p = labsub.add_parser("add", parents=[common], help="add nodes to a lab that is up")
    p.add_argument("--nodes", type=int, default=1, help="number of nodes to add (default 1)")
    p.add_argument("--timeout", type=float, help="seconds to wait for them to report running")
    p.set_defaults(handler=_guarded(handle_add))
    p = labsub.add_parser("restart", parents=[common], help="restart a host's main program")
    p.add_argument("node", help="node1, … or mirror1, …")
    p.add_argument("--kill", action="store_true", help="SIGKILL instead of an orderly stop")
    p.set_defaults(handler=_guarded(handle_restart))
    p = labsub.add_parser("status", parents=[common], help="list the nodes and their state")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_guarded(handle_status))
    p = labsub.add_parser("exec", parents=[common], help="run a command inside a node")
    p.add_argument("node", help="node1, node2, … or mirror1, …")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND… (default: a shell)")
    p.set_defaults(handler=_guarded(handle_exec))
    p = labsub.add_parser("down", parents=[common], help="stop and remove everything")
    p.add_argument(
        "--keep-state",
        action="store_true",
        help="keep the nodes' state directories (keys, logs) for inspection",
    )
    p.set_defaults(handler=_guarded(handle_down))
    loss_cmd.register(labsub, common, _guarded)


def _guarded(handler: Handler) -> Handler:
    """Turn a LabError into its message and exit code, Ctrl-C into 130."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except LabError as e:
            print(f"rms lab: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:
            print("rms lab: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    return run


def _say(line: str) -> None:
    print(line, flush=True)


def _lab(args: argparse.Namespace) -> Lab:
    return Lab(lab_paths(args.name), NetnsDriver(), MountDriver(), _say)


def handle_up(args: argparse.Namespace) -> int:
    """Build the lab; on failure everything made is removed again."""
    lab = _lab(args)
    require_root()
    require_tools()
    spread = Diversity(args.locations, args.networks)
    up(lab, args.nodes, args.timeout, args.mirrors, spread)
    return EXIT_OK


def handle_add(args: argparse.Namespace) -> int:
    """Add nodes to a running lab; they join the cloud through the feed like any newcomer."""
    lab = _lab(args)
    require_root()
    require_tools()
    add(lab, args.nodes, args.timeout)
    return EXIT_OK


def handle_restart(args: argparse.Namespace) -> int:
    """Restart one host's daemon, as a crash or an upgrade would."""
    lab = _lab(args)
    validate_host_name(args.node)
    require_root()
    restart(lab, args.node, hard=args.kill)
    return EXIT_OK


def handle_down(args: argparse.Namespace) -> int:
    """Remove the lab and anything a killed run left behind."""
    lab = _lab(args)
    require_root()
    with LabLock(lab.paths.lock_file, lab.paths.name) as lock:
        left = find_leftovers(lab.paths, lab.netns)
        if left.empty:
            lock.remove()
            _say(f"lab {lab.paths.name}: nothing to remove")
            return EXIT_OK
        done = teardown(lab.paths, lab.netns, lab.mounts, keep_state=args.keep_state)
        if done.problems:
            raise LabError("\n".join(["teardown left something behind:", *done.problems]))
        lock.remove()
    kept = f"; kept {lab.paths.state_dir}" if args.keep_state else ""
    _say(f"lab {lab.paths.name} is down: {done.describe()}{kept}")
    return EXIT_OK


def handle_status(args: argparse.Namespace) -> int:
    """Show every node: namespace, address, pid, liveness, rms state, node id."""
    lab = _lab(args)
    require_root()
    record = _record_or_none(lab)
    if record is None:
        phase = ABSENT if find_leftovers(lab.paths, lab.netns).empty else STALE
        _print_absent(lab.paths, phase, args.json)
        return EXIT_DOWN
    statuses = node_statuses(lab.paths, record.nodes, lab.netns)
    phase = record.phase
    if phase == BUILDING and not lock_held(lab.paths.lock_file):
        phase = STALE
    kinds = [n.kind for n in record.nodes]
    nodes = [s for s, k in zip(statuses, kinds, strict=True) if k != MIRROR]
    mirrors = [s for s, k in zip(statuses, kinds, strict=True) if k == MIRROR]
    if args.json:
        print(
            json.dumps(
                {
                    "lab": lab.paths.name,
                    "phase": phase,
                    "nodes": [s.as_json() for s in nodes],
                    "mirrors": [s.as_json() for s in mirrors],
                }
            )
        )
    else:
        print(f"lab {lab.paths.name} ({phase}), {len(nodes)} nodes, {len(mirrors)} mirrors")
        print(render_table([*mirrors, *nodes]))
    if phase == STALE:
        _print_absent(lab.paths, phase, as_json=False)
    return EXIT_OK if all_running(statuses) and phase == UP else EXIT_DOWN


def _record_or_none(lab: Lab) -> LabRecord | None:
    """The state record if the lab's namespaces exist too."""
    record = load(lab.paths.state_file)
    if record is None or not lab.netns.path(lab.paths.inet_netns).exists():
        return None
    return record


def _print_absent(paths: LabPaths, phase: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"lab": paths.name, "phase": phase, "nodes": [], "mirrors": []}))
    opt = name_option(paths)
    if phase == STALE:
        print(
            f"rms lab: lab {paths.name} was left half-built by an interrupted run; "
            f"remove it with `rms lab down{opt}`",
            file=sys.stderr,
        )
    else:
        print(
            f"rms lab: lab {paths.name} is not up; start it with `rms lab up{opt}`", file=sys.stderr
        )


def handle_exec(args: argparse.Namespace) -> int:
    """Replace this process by the command running inside the node."""
    lab = _lab(args)
    validate_host_name(args.node)
    require_root()
    record = _record_or_none(lab)
    if record is None or record.node(args.node) is None:
        opt = name_option(lab.paths)
        raise LabError(f"lab {lab.paths.name} has no node {args.node}; see `rms lab status{opt}`")
    argv = enter_argv(lab.paths, args.node, lab.netns, _cwd())
    argv[0] = tool_path(argv[0])
    cmd = exec_command(args.cmd)
    sys.stdout.flush()
    # exec, not a child: the exit code, signals and the terminal pass straight through.
    os.execve(argv[0], [*argv, *cmd], node_environ(os.environ, strip_rms=False))  # noqa: S606


def exec_command(remainder: Sequence[str]) -> list[str]:
    """The command after `--`, or the user's shell when none is given."""
    cmd = list(remainder[1:] if remainder[:1] == ["--"] else remainder)
    return cmd or [os.environ.get("SHELL", "/bin/sh")]


def _cwd() -> Path:
    """Keep the caller's directory inside the node (it sees the host's files), else /."""
    try:
        cwd = Path.cwd()
    except OSError:
        return Path("/")
    masked = any(cwd == m or m in cwd.parents for m in PRIVATE_PATHS)
    return Path("/") if masked else cwd
