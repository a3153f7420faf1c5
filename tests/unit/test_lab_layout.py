"""The lab's names, addresses and paths: pure functions, no machine touched."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from rms.lab.layout import (
    MAX_NODES,
    NET4,
    NET6,
    LabPaths,
    lab_paths,
    name_option,
    node_address,
    node_address6,
    node_index,
    validate_lab_name,
)
from rms.lab.system import LabUsageError, node_environ


def test_first_nodes_get_the_documented_addresses() -> None:
    assert node_address(1).ip == IPv4Address("198.18.0.11")
    assert str(node_address(3)) == "198.18.0.13/15"
    assert node_address6(1).ip == IPv6Address("2001:2::c612:b")
    assert node_address6(1).network.prefixlen == 64


def test_addresses_scale_past_250_nodes_without_collisions() -> None:
    v4 = [node_address(i).ip for i in range(1, MAX_NODES + 1)]
    v6 = [node_address6(i).ip for i in range(1, MAX_NODES + 1)]
    assert len(set(v4)) == MAX_NODES and len(set(v6)) == MAX_NODES
    assert node_address(246).ip == IPv4Address("198.18.1.0")
    assert all(ip in NET4 and ip != NET4.network_address for ip in v4)
    assert all(ip in NET6 for ip in v6)


def test_address_outside_the_block_is_refused() -> None:
    with pytest.raises(LabUsageError):
        node_address(0)
    with pytest.raises(LabUsageError):
        node_address(NET4.num_addresses)


@pytest.mark.parametrize("name", ["tclab", "t1", "abcdefghijkl"])
def test_good_lab_names(name: str) -> None:
    assert validate_lab_name(name) == name


@pytest.mark.parametrize("name", ["", "1lab", "Lab", "my-lab", "my_lab", "abcdefghijklm", "a b"])
def test_bad_lab_names(name: str) -> None:
    with pytest.raises(LabUsageError):
        validate_lab_name(name)


def test_node_names_parse() -> None:
    assert node_index("node1") == 1
    assert node_index("node42") == 42
    for bad in ("node0", "node", "node01", "n1", "node1x"):
        with pytest.raises(LabUsageError):
            node_index(bad)


def test_netns_ownership_never_matches_another_lab() -> None:
    paths = LabPaths("tclab")
    assert paths.owns_netns("tclab-inet") and paths.owns_netns("tclab-node12")
    assert not paths.owns_netns("tclab2-node1")
    assert not paths.owns_netns("tclab-nodeX")
    assert not paths.owns_netns("other-node1")
    assert not paths.owns_netns("tclab-")


def test_paths_of_a_lab() -> None:
    paths = LabPaths("t1", Path("/r"), Path("/s"))
    assert paths.mnt_file("node2") == Path("/r/t1/mnt/node2")
    assert paths.state_file == Path("/r/t1/state.json")
    assert paths.lock_file == Path("/r/t1.lock")
    assert paths.node_log("node2", "rms") == Path("/s/t1/node2/log/rms.log")
    assert paths.netns("node2") == "t1-node2" and paths.inet_netns == "t1-inet"
    assert [n.name for n in paths.plan(3)] == ["node1", "node2", "node3"]


def test_plan_refuses_silly_counts() -> None:
    with pytest.raises(LabUsageError):
        LabPaths("t1").plan(0)
    with pytest.raises(LabUsageError):
        LabPaths("t1").plan(MAX_NODES + 1)


def test_lab_paths_from_argument_environment_and_default() -> None:
    env = {"RMS_LAB_NAME": "envlab", "RMS_LAB_RUN_DIR": "/tmp/r", "RMS_LAB_STATE_DIR": "/tmp/s"}
    assert lab_paths("arg", env).name == "arg"
    chosen = lab_paths(None, env)
    assert chosen == LabPaths("envlab", Path("/tmp/r"), Path("/tmp/s"))
    assert lab_paths(None, {}).name == "tclab"
    with pytest.raises(LabUsageError):
        lab_paths(None, {"RMS_LAB_RUN_DIR": "relative"})


def test_name_option_only_for_other_labs() -> None:
    assert name_option(LabPaths("tclab")) == ""
    assert name_option(LabPaths("t1")) == " --name t1"


def test_node_environment_puts_our_venv_first_and_can_drop_rms_overrides() -> None:
    base = {"PATH": "/usr/bin", "RMS_CONFIG": "/x.toml", "HOME": "/root"}
    stripped = node_environ(base, strip_rms=True)
    assert "RMS_CONFIG" not in stripped and stripped["HOME"] == "/root"
    assert stripped["PATH"].endswith(":/usr/bin")
    assert node_environ(base, strip_rms=False)["RMS_CONFIG"] == "/x.toml"
