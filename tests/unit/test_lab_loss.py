"""`rms lab loss`: the nftables script it feeds to `nft -f` inside a node."""

from __future__ import annotations

import pytest

from rms.cli.main import build_parser
from rms.lab.loss import TABLE, loss_script
from rms.lab.system import LabUsageError


def test_loss_recreates_one_table_dropping_at_random_on_the_uplink() -> None:
    script = loss_script(5).splitlines()
    # Declared, deleted and made again in one transaction: applying it twice leaves one rule.
    assert script[:2] == [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}"]
    rules = [line.strip() for line in script if "drop" in line]
    assert rules == ['iifname "eth0" numgen random mod 100 < 5 counter drop']
    assert "type filter hook input priority -300; policy accept;" in loss_script(5)


def test_zero_removes_the_table_and_nothing_else() -> None:
    assert loss_script(0) == f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"


def test_every_percentage_gives_its_own_threshold() -> None:
    assert "< 100 counter drop" in loss_script(100)
    assert "< 1 counter drop" in loss_script(1)


@pytest.mark.parametrize("bad", [-1, 101, 10**6])
def test_a_percentage_outside_0_to_100_is_refused(bad: int) -> None:
    with pytest.raises(LabUsageError, match="0 to 100"):
        loss_script(bad)


@pytest.mark.parametrize("argv", [["node1", "x"], ["node1", "-5"], ["node1", "150"], ["node1"]])
def test_the_command_line_refuses_bad_percentages(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["lab", "loss", *argv])
    assert exit_.value.code == 2


def test_the_command_line_takes_a_node_and_a_percentage() -> None:
    args = build_parser().parse_args(["lab", "loss", "--name", "t1", "node3", "5"])
    assert (args.node, args.percent, args.name) == ("node3", 5, "t1")
