"""The lab's parsers and renderers: mountinfo, state records, node answers, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from rms.cli.main import build_parser
from rms.control.client import ControlClient
from rms.lab.cli import exec_command
from rms.lab.down import Leftovers, Teardown
from rms.lab.mounts import parse_mount_points, under, unescape
from rms.lab.state import BUILDING, LabLock, LabRecord, NodeRecord, lock_held
from rms.lab.status import (
    NodeStatus,
    all_running,
    ask,
    control_socket,
    interpret,
    render_table,
)
from rms.lab.system import LabError

MOUNTINFO = """\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
42 27 254:0 /run/truecloud-lab/t1/mnt /run/truecloud-lab/t1/mnt rw - ext4 /dev/vda rw
71 42 0:4 mnt:[4026532316] /run/truecloud-lab/t1/mnt/node1 rw - nsfs nsfs rw
44 43 0:4 net:[4026532177] /run/netns/t1-inet rw shared:2 - nsfs nsfs rw
90 27 0:50 / /mnt/with\\040space rw - tmpfs tmpfs rw
91 42 0:4 mnt:[4026532999] /run/truecloud-lab/t1/mnt/node1 rw - nsfs nsfs rw
"""


def test_mountinfo_points_are_unescaped() -> None:
    points = parse_mount_points(MOUNTINFO)
    assert Path("/mnt/with space") in points
    assert points[0] == Path("/")
    assert unescape("a\\011b") == "a\tb"


def test_unmount_order_is_deepest_and_newest_first() -> None:
    top = Path("/run/truecloud-lab/t1")
    order = under(parse_mount_points(MOUNTINFO), [top])
    node1 = Path("/run/truecloud-lab/t1/mnt/node1")
    assert order == [node1, node1, Path("/run/truecloud-lab/t1/mnt")]
    assert under(parse_mount_points(MOUNTINFO), [Path("/run/truecloud-lab/t")]) == []


def test_state_record_round_trips() -> None:
    node = NodeRecord("node1", "t1-node1", "198.18.0.11", "2001:2::c612:b", {"rms": 42})
    record = LabRecord("t1", BUILDING, (), 1.5).with_node(node)
    again = LabRecord.from_json(record.to_json())
    assert again == record
    assert again.node("node1") == node and again.node("node2") is None


def test_damaged_state_record_is_a_lab_error() -> None:
    with pytest.raises(LabError, match="damaged"):
        LabRecord.from_json('{"lab": "t1"}')
    with pytest.raises(LabError):
        LabRecord.from_json("not json")


def test_node_answers() -> None:
    assert interpret({"state": "running", "node_id": "ab12"}) == ("running", "ab12")
    assert interpret({"state": "down", "reason": "x"}) == ("down", None)
    assert interpret({}) == ("unknown", None)


def test_control_socket_is_reached_through_the_daemons_root() -> None:
    assert control_socket(42) == Path("/proc/42/root/run/rms/control.sock")


async def test_a_node_without_a_daemon_is_down(tmp_path: Path) -> None:
    assert await ask(None) == ("down", None)
    assert await ask(ControlClient(tmp_path / "none.sock", 1.0)) == ("down", None)


def _status(name: str, alive: bool, state: str) -> NodeStatus:
    return NodeStatus(
        name, f"t1-{name}", "198.18.0.11", "2001:2::c612:b", 7, alive, state, "f" * 64
    )


def test_status_table_and_health() -> None:
    good = [_status("node1", True, "running"), _status("node2", True, "running")]
    assert all_running(good)
    assert not all_running([*good, _status("node3", False, "down")])
    assert not all_running([])
    table = render_table(good).splitlines()
    assert table[0].split() == ["NODE", "NAMESPACE", "ADDRESS", "PID", "ALIVE", "STATE", "NODE_ID"]
    assert table[1].split()[-1] == "f" * 16
    assert good[0].as_json()["alive"] is True


def test_exec_parses_the_command_after_the_node() -> None:
    args = build_parser().parse_args(["lab", "exec", "--name", "t1", "node2", "--", "rms", "-h"])
    assert (args.name, args.node, exec_command(args.cmd)) == ("t1", "node2", ["rms", "-h"])
    assert exec_command(["--", "true"]) == ["true"]
    assert exec_command([])[0].endswith("sh")


def test_every_lab_subcommand_takes_a_name() -> None:
    parser = build_parser()
    for sub in (["up", "--nodes", "2"], ["status", "--json"], ["down"], ["exec", "node1"]):
        args = parser.parse_args(["lab", sub[0], "--name", "x", *sub[1:]])
        assert args.name == "x" and callable(args.handler)


def test_misuse_exits_2() -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["lab", "up", "--nodes", "many"])
    assert e.value.code == 2


def test_descriptions_for_people() -> None:
    left = Leftovers(("t1-inet",), (Path("/a"), Path("/b")), ())
    assert left.describe() == "1 network namespace, 2 mounts"
    assert Leftovers((), (), ()).empty
    done = Teardown(1, 2, 3, 0, ())
    assert done.describe().startswith("stopped 1 process, unmounted 2 mounts")


def test_lab_lock_is_exclusive_and_visible(tmp_path: Path) -> None:
    path = tmp_path / "t1.lock"
    assert not lock_held(path)
    with LabLock(path, "t1") as lock:
        assert lock_held(path)
        with pytest.raises(LabError, match="another"), LabLock(path, "t1"):
            pass
        lock.remove()
    assert not lock_held(path) and not path.exists()
    with LabLock(path, "t1"):
        assert lock_held(path)
