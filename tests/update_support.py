"""A component library repository in a temporary directory, its keys, and a node reading it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Targets, Timestamp

from rms.update.client import Library
from rms.update.fetcher import DirectorySource, Source
from rms.update.roles import RoleKeys
from rms.update.store import generate_key, load_signer
from rms.update.tool import RepoTool

T0 = datetime(2030, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
KEY_NAMES = ("root1", "root2", "root3", "targets1", "targets2", "targets3", "snapshot", "ts")
PACKAGE = b"!<arch>\ndebian-binary   rms 0.1.0 package bytes\n" * 20
POLICY = b'{"entitlement_ratio": 0.4, "vpn_capacity": 8}\n'


@dataclass
class Recorder:
    """An installer that keeps what it was handed (tests only)."""

    installed: list[tuple[str, bytes]] = field(default_factory=list)

    def install(self, name: str, path: Path, target: TargetFile) -> None:
        self.installed.append((name, path.read_bytes()))


@dataclass
class Repo:
    """A repository with three root keys (2 of 3), three targets keys (2 of 3), online keys."""

    path: Path
    keys: Path
    tool: RepoTool

    def key(self, name: str) -> Path:
        return self.keys / f"{name}.key"

    def signer(self, name: str) -> CryptoSigner:
        return load_signer(self.key(name))

    def release(self, now: datetime, files: dict[str, bytes], signers: tuple[str, ...]) -> None:
        """Stage `files`, sign targets with `signers`, publish with the online keys."""
        for name, data in files.items():
            self.tool.add(name, data, {"version": "1"}, now)
        for name in signers:
            self.tool.sign("targets", self.key(name))
        self.tool.publish(self.key("snapshot"), self.key("ts"), now)

    def copy(self, to: Path) -> Path:
        """A frozen copy of what the repository serves now (an attacker's mirror)."""
        shutil.copytree(self.path, to)
        return to

    @property
    def trusted_root(self) -> Path:
        return self.path / "metadata" / "1.root.json"

    def online_release(
        self, targets: Metadata[Targets] | bytes, version: int, now: datetime
    ) -> None:
        """Publish targets.json as given, with fresh snapshot and timestamp from the online
        keys (what an attacker holding the online keys, or a careless release, could do)."""
        data = targets if isinstance(targets, bytes) else targets.to_bytes()
        (self.path / "metadata" / f"{version}.targets.json").write_bytes(data)
        snap_version = self.tool.dir.latest_version("snapshot") + 1
        snap = Metadata(Snapshot(version=snap_version, expires=now + 7 * DAY))
        snap.signed.meta["targets.json"] = MetaFile(version=version)
        snap.sign(self.signer("snapshot"))
        self.tool.dir.publish(snap)
        self.stamp(snap, now)

    def stamp(self, snap: Metadata[Snapshot], now: datetime, version: int | None = None) -> None:
        """A timestamp over `snap`, signed with the timestamp key."""
        old = self.tool.dir.timestamp()
        number = version or (old.signed.version + 1 if old else 1)
        meta = MetaFile.from_data(snap.signed.version, snap.to_bytes(), ["sha256"])
        stamp = Metadata(Timestamp(version=number, expires=now + DAY, snapshot_meta=meta))
        stamp.sign(self.signer("ts"))
        self.tool.dir.publish_timestamp(stamp)


def make_repo(base: Path, now: datetime = T0) -> Repo:
    """A published repository: root v1, targets v1 with a package and the policy document."""
    keys = base / "keys"
    public = {name: generate_key(keys / f"{name}.key") for name in KEY_NAMES}

    def role(names: tuple[str, ...], threshold: int) -> RoleKeys:
        return RoleKeys(tuple(public[n] for n in names), threshold)

    repo = Repo(base / "repo", keys, RepoTool(base / "repo"))
    repo.tool.init(
        {
            "root": role(("root1", "root2", "root3"), 2),
            "targets": role(("targets1", "targets2", "targets3"), 2),
            "snapshot": role(("snapshot",), 1),
            "timestamp": role(("ts",), 1),
        },
        now,
    )
    repo.tool.sign("root", repo.key("root1"))
    repo.tool.sign("root", repo.key("root3"))
    repo.release(now, {"rms_0.1.0_all.deb": PACKAGE, "policy/policy.json": POLICY},
                 ("targets1", "targets2"))  # fmt: skip
    return repo


def node(base: Path, repo: Repo, source: Source | None = None) -> Library:
    """A node that trusts the repository's first root and keeps its cache under `base`."""
    shipped = base / "shipped-root.json"
    if not shipped.exists():
        shipped.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(repo.trusted_root, shipped)
    return Library(shipped, base / "cache", source or DirectorySource(repo.path))
