"""The lab's component library: a TUF repository its mirrors serve and its nodes verify.

`rms lab up` plays the development team once: it makes the library's keys (3 root keys, 2
of 3; 3 targets keys, 2 of 3; one snapshot and one timestamp key) under the lab's CA
directory (0700), signs and countersigns a release with one document target, and publishes
it. Each mirror gets its own copy of the published files (`[library] directory`), as real
mirrors would; each node gets root v1 as its shipped trust anchor (`[update] trusted_root`)
and reads the library from the mirrors at the discovery name. So in the demo

    rms lab exec node1 -- rms update check --config /var/lib/rms/rms.toml
    rms lab exec node1 -- rms update install lab/README.txt --config /var/lib/rms/rms.toml

verify over the lab's network, through the lab CA's HTTPS, like a node of the real cloud.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from rms.lab.layout import LabPaths
from rms.update.roles import RoleKeys
from rms.update.store import generate_key
from rms.update.tool import RepoTool

README_TARGET = "lab/README.txt"
ROOT_NAMES = ("root1", "root2", "root3")
TARGETS_NAMES = ("targets1", "targets2", "targets3")
ONLINE_NAMES = ("snapshot", "timestamp")
SERVED = ("metadata", "targets")


def repository_dir(paths: LabPaths) -> Path:
    """Where `rms lab up` keeps the lab's repository (as the publisher)."""
    return paths.run_dir / "library"


def keys_dir(paths: LabPaths) -> Path:
    """The lab library's private keys, beside the lab CA's."""
    return paths.ca_dir / "library-keys"


def trusted_root(paths: LabPaths) -> Path:
    """Root v1: what every lab node ships with."""
    return repository_dir(paths) / "metadata" / "1.root.json"


def build_library(paths: LabPaths, now: datetime | None = None) -> RepoTool:
    """Make the keys and publish release 1 of the lab's library."""
    when = now or datetime.now(UTC)
    keys = keys_dir(paths)
    keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    public = {n: generate_key(keys / f"{n}.key") for n in ROOT_NAMES + TARGETS_NAMES + ONLINE_NAMES}

    def role(names: tuple[str, ...], threshold: int) -> RoleKeys:
        return RoleKeys(tuple(public[n] for n in names), threshold)

    tool = RepoTool(repository_dir(paths))
    tool.init(
        {
            "root": role(ROOT_NAMES, 2),
            "targets": role(TARGETS_NAMES, 2),
            "snapshot": role(("snapshot",), 1),
            "timestamp": role(("timestamp",), 1),
        },
        when,
    )
    for name in ROOT_NAMES[:2]:
        tool.sign("root", keys / f"{name}.key")
    tool.add(README_TARGET, readme(paths, when), {"lab": paths.name}, when)
    for name in TARGETS_NAMES[:2]:  # signed and countersigned
        tool.sign("targets", keys / f"{name}.key")
    tool.publish(keys / "snapshot.key", keys / "timestamp.key", when)
    return tool


def readme(paths: LabPaths, when: datetime) -> bytes:
    """The lab library's one document."""
    return (
        f"True Cloud lab {paths.name}: component library release 1, {when:%Y-%m-%d %H:%M} UTC.\n"
        "A node that installed this file verified it with The Update Framework: root,\n"
        "timestamp, snapshot and targets metadata, targets signed by 2 of 3 offline keys.\n"
    ).encode()


def copy_published(paths: LabPaths, to: Path) -> None:
    """Give a mirror its own copy of what the library publishes (never staged/ or keys)."""
    for part in SERVED:
        target = to / part
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(repository_dir(paths) / part, target, symlinks=False)
