"""The component library in the lab: nodes verify and install it from the mirrors over HTTPS.

`rms lab up` publishes a signed release and gives each mirror a copy; a node checks and
installs the lab's document through the discovery name (every mirror, lab CA). Then every
mirror's copy is tampered with: the node refuses it, exits 1 and installs nothing.
"""

from __future__ import annotations

import json
import os

import pytest

from rms.lab.cloud import NODE_CONFIG
from rms.lab.layout import lab_paths
from rms.lab.library import README_TARGET
from tests.lab.support import lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.timeout(600),
]


def update(name: str, *args: str) -> tuple[int, str, str]:
    config = ("--config", str(NODE_CONFIG))  # the node's own rms.toml, as `rms run` reads it
    done = lab(name, "exec", "node1", "--", "rms", "update", *args, *config)
    return done.returncode, done.stdout, done.stderr


def test_a_lab_node_verifies_the_library_and_refuses_a_tampered_copy(lab_name: str) -> None:
    up = lab(lab_name, "up", "--nodes", "1")
    assert up.returncode == 0, up.stdout + up.stderr

    code, out, err = update(lab_name, "check", "--json")
    assert code == 0, err
    (listed,) = json.loads(out)
    assert listed["name"] == README_TARGET and listed["custom"] == {"lab": lab_name}

    code, out, err = update(lab_name, "install", README_TARGET)
    assert code == 0, err
    paths = lab_paths(lab_name)
    installed = paths.node_state_dir("node1") / "library" / "documents" / README_TARGET
    assert installed.read_text().startswith(f"True Cloud lab {lab_name}")
    installed.unlink()

    for mirror in range(1, 4):
        copy = paths.node_state_dir(f"mirror{mirror}") / "library" / "targets" / "lab"
        for served in copy.iterdir():
            served.write_bytes(served.read_bytes().replace(b"release 1", b"release 9"))
    code, out, err = update(lab_name, "install", README_TARGET)
    assert code == 1
    assert "refused, nothing was installed: tampered" in err
    assert not installed.exists()
