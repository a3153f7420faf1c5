"""Entitlement in the lab (issue 6 acceptance): a node that contributes X ends with the
entitlement the policy gives, and a change of contribution made in the node takes effect.

Lab node N offers N x 10 GiB and 1 core (rms.lab.cloud.node_config). A fresh node is in
probation (factor 1/2) and has been up all its life (availability 1), so with the default
ratio 2/5 node N is entitled to exactly N x 2 GiB and 0.2 cores.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from tests.lab.support import lab, node_statuses

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.timeout(600),
]

NODES = 3
GIB = 2**30


def wait_for_entitlement(name: str, count: int, timeout: float = 120) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    statuses: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        statuses = node_statuses(name)
        if len(statuses) >= count and all("entitlement" in s for s in statuses.values()):
            return statuses
        time.sleep(2)
    raise AssertionError(f"no entitlement section from every node: {sorted(statuses)}")


def test_every_node_gets_what_the_policy_gives_and_can_change_it(lab_name: str) -> None:
    up = lab(lab_name, "up", "--nodes", str(NODES))
    assert up.returncode == 0, up.stderr
    statuses = wait_for_entitlement(lab_name, NODES)
    for node, status in statuses.items():
        if not node.startswith("node"):
            continue
        index = int(node.removeprefix("node"))
        ent = status["entitlement"]
        assert ent["contribution"]["storage_bytes"] == 10 * index * GIB
        assert ent["availability"] == 1.0 and ent["probation"]["active"] is True
        assert ent["entitlement"] == {"storage_bytes": 2 * index * GIB, "cpu_millicores": 200}
        assert ent["volume_size_bytes"] == 2 * index * GIB // 5

    done = lab(lab_name, "exec", "node2", "--", "rms", "contribute", "50 GiB", "--yes")
    assert done.returncode == 0, done.stderr
    shown = lab(lab_name, "exec", "node2", "--", "rms", "status", "--json")
    ent = json.loads(shown.stdout)["entitlement"]
    assert ent["contribution"]["storage_bytes"] == 50 * GIB
    assert ent["entitlement"]["storage_bytes"] == 10 * GIB
