"""Entitlement in the lab (issue 6 acceptance): a node that contributes X ends with the
entitlement the policy gives, and a change of contribution made in the node takes effect.

Lab node N offers N x 10 GiB and 1 core (rms.lab.cloud.node_config). A fresh node is in
probation (factor 1/2) and has been up all its life (availability 1), so with the default
ratio 2/5 node N is entitled to exactly N x 2 GiB and 0.2 cores.

With the storage services on, each node's Volume Provider (2 GiB, rms.lab.storage) reports
what it really has room for, and the entitlement follows the lower of offer and room.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

import pytest

from rms.lab.storage import PROVIDER_CAPACITY_MIB
from tests.lab.support import lab, node_statuses

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.timeout(600),
]

NODES = 3
GIB = 2**30


def wait_for_entitlement(
    name: str, count: int, timeout: float = 120, measured: bool = False
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    statuses: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        statuses = node_statuses(name)
        found = [s.get("entitlement") for n, s in statuses.items() if n.startswith("node")]
        ready = len(found) >= count and all(found)
        if ready and (not measured or all(measured_room(e) is not None for e in found)):
            return statuses
        time.sleep(2)
    raise AssertionError(f"no (measured) entitlement section from every node: {sorted(statuses)}")


def measured_room(entitlement: Any) -> int | None:
    value = entitlement["contribution"].get("capacity_bytes")
    return value if isinstance(value, int) else None


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


@pytest.mark.skipif(shutil.which("tgtd") is None, reason="the Volume Provider needs tgt")
def test_a_providers_measured_contribution_gives_its_entitlement(
    lab_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RMS_LAB_STORAGE", "1")  # every node runs its Volume Provider
    up = lab(lab_name, "up", "--nodes", "2")
    assert up.returncode == 0, up.stderr
    statuses = wait_for_entitlement(lab_name, 2, timeout=240, measured=True)
    for node, status in statuses.items():
        if not node.startswith("node"):
            continue
        index = int(node.removeprefix("node"))
        ent = status["entitlement"]
        c = ent["contribution"]
        room = measured_room(ent)
        assert room is not None and 0 < room <= PROVIDER_CAPACITY_MIB * 2**20
        assert c["storage_bytes"] == 10 * index * GIB and room < c["storage_bytes"]
        assert c["verified_storage_bytes"] == room  # audits unknown: leases count whole
        assert ent["policy"]["source"] == "built-in defaults" and ent["ratio"] == 0.4
        assert ent["availability"] == 1.0 and ent["factor"] == 0.5
        assert ent["entitlement"]["storage_bytes"] == room * 2 // 10  # x 2/5 x 1/2, floor

    # An offer below the room: the offer is what counts, end to end.
    done = lab(lab_name, "exec", "node2", "--", "rms", "contribute", "1 GiB", "--yes")
    assert done.returncode == 0, done.stderr
    shown = lab(lab_name, "exec", "node2", "--", "rms", "status", "--json")
    ent = json.loads(shown.stdout)["entitlement"]
    assert ent["contribution"]["verified_storage_bytes"] == GIB
    assert ent["entitlement"]["storage_bytes"] == GIB // 5
    table = lab(lab_name, "exec", "node2", "--", "rms", "status")
    assert "leased (Volume Provider)" in table.stdout and "built-in defaults" in table.stdout
