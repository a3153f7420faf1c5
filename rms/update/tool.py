"""The operations of `rms-repo` over one repository directory (the CLI is rms.update.repo).

Root and targets keys are offline: `sign` runs on each key holder's air-gapped machine over
a copy of staged/. Snapshot and timestamp keys are online: `publish` and `timestamp` run on
the repository host. Every operation takes `now`, so tests can age a repository.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from securesystemslib.signer import Key, Signer
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from rms.update import roles
from rms.update.roles import Expiry, M, RepoError, RoleKeys
from rms.update.store import RepoDir, load_signer


class RepoTool:
    """The operations of `rms-repo` over one directory; `now` is always an argument."""

    def __init__(self, path: Path, expiry: Expiry | None = None) -> None:
        self.dir = RepoDir(path)
        self.expiry = expiry or Expiry()

    def init(self, keys: dict[str, RoleKeys], now: datetime) -> None:
        """Stage root v1 and an empty targets v1."""
        if self.dir.exists():
            raise RepoError(f"{self.dir.path} already holds a repository")
        self.dir.stage(roles.new_root(keys, now, self.expiry))
        self.dir.stage(roles.new_targets(now, self.expiry))

    def _trusted_root(self) -> Root:
        root = self.dir.root() or self.dir.staged_root()
        if root is None:
            raise RepoError(f"{self.dir.path} has no root.json; run `rms-repo init` first")
        return root.signed

    def _editable_targets(self, now: datetime) -> Metadata[Targets]:
        staged = self.dir.staged_targets()
        if staged is not None:
            return staged
        published = self.dir.targets()
        if published is None:
            raise RepoError(f"{self.dir.path} has no targets.json; run `rms-repo init` first")
        return roles.next_version(published, now, self.expiry)

    def add(self, name: str, data: bytes, custom: dict[str, str], now: datetime) -> str:
        """Stage `data` as target `name`; returns its sha256."""
        staged = self._editable_targets(now)
        roles.add_target(staged, name, data, custom)
        sha256 = staged.signed.targets[name].hashes["sha256"]
        self.dir.write_target(name, sha256, data)
        self.dir.stage(staged)
        return sha256

    def renew(self, role: str, now: datetime) -> int:
        """Stage the next version of root or targets unchanged but for a fresh expiry."""
        if role == "root":
            return self.rotate("root", (), (), None, now)
        if role != "targets":
            raise RepoError("renew root or targets; publish renews snapshot and timestamp")
        if self.dir.staged_targets() is not None:
            raise RepoError("a targets.json is already staged: sign and publish it")
        staged = self._editable_targets(now)
        self.dir.stage(staged)
        return staged.signed.version

    def remove(self, name: str, now: datetime) -> None:
        """Stage targets without `name`."""
        staged = self._editable_targets(now)
        roles.remove_target(staged, name)
        self.dir.stage(staged)

    def sign(self, role: str, key_file: Path) -> str:
        """Add one signature to the staged `role`; returns a progress line."""
        signer = load_signer(key_file)
        if role == "root":
            staged_root = self.dir.staged_root()
            if staged_root is None:
                raise RepoError("no root.json is staged; `rms-repo rotate` stages one")
            return self._sign_root(staged_root, signer, key_file)
        if role != "targets":
            raise RepoError("only root and targets are signed offline; see `publish`")
        staged = self.dir.staged_targets()
        if staged is None:
            raise RepoError("no targets.json is staged; `rms-repo add` stages one")
        root = self.dir.staged_root() or self.dir.root()
        result = roles.sign(staged, signer, self._required(root).signed)
        self.dir.stage(staged)
        return f"targets v{staged.signed.version}: {len(result.signed)} of {result.threshold}"

    def _sign_root(self, staged: Metadata[Root], signer: Signer, key_file: Path) -> str:
        # A new root needs the old root keys' threshold and its own (TUF spec 5.3.4).
        old = self.dir.root()
        keyid = signer.public_key.keyid
        in_old = old is not None and keyid in old.signed.roles["root"].keyids
        if keyid not in staged.signed.roles["root"].keyids and not in_old:
            raise RepoError(f"{key_file} holds no root key of the old or the new root.json")
        staged.sign(signer, append=True)
        self.dir.stage(staged)
        new = roles.verification(staged.signed, "root", staged)
        line = f"root v{staged.signed.version}: new keys {len(new.signed)} of {new.threshold}"
        if old is not None:
            was = roles.verification(old.signed, "root", staged)
            line += f", old keys {len(was.signed)} of {was.threshold}"
        return line

    @staticmethod
    def _required(md: Metadata[Root] | None) -> Metadata[Root]:
        if md is None:
            raise RepoError("no root.json; run `rms-repo init` first")
        return md

    def rotate(
        self,
        role: str,
        add: tuple[Key, ...],
        revoke: tuple[str, ...],
        threshold: int | None,
        now: datetime,
    ) -> int:
        """Stage the next root with `role`'s keys changed; returns its version."""
        if self.dir.staged_root() is not None:
            raise RepoError("a root.json is already staged: sign and publish it first")
        current = self._required(self.dir.root())
        staged = roles.rotate(
            current, role, add=add, revoke=revoke, threshold=threshold, now=now, expiry=self.expiry
        )
        self.dir.stage(staged)
        return staged.signed.version

    def publish(self, snapshot_key: Path, timestamp_key: Path, now: datetime) -> str:
        """Publish what is fully signed, then a new snapshot and timestamp (all or nothing)."""
        snapshot_signer, timestamp_signer = load_signer(snapshot_key), load_signer(timestamp_key)
        staged_root, staged_targets = self.dir.staged_root(), self.dir.staged_targets()
        old_root = self.dir.root()
        if staged_root is not None:
            if old_root is None:
                roles.require_threshold(staged_root.signed, staged_root, "root.json v1")
            else:
                roles.require_root_rotation(old_root.signed, staged_root)
        root = self._required(staged_root or old_root).signed
        targets = staged_targets or self.dir.targets()
        if targets is None:
            raise RepoError("targets.json has never been published; sign the staged one")
        roles.require_threshold(root, targets, f"targets v{targets.signed.version}")
        snapshot = roles.snapshot_of(self.dir.snapshot(), targets, now, self.expiry)
        roles.sign(snapshot, snapshot_signer, root)
        stamp = self._stamp(timestamp_signer, root, snapshot, now)
        published = []
        for staged in (staged_root, staged_targets):
            if staged is not None:
                self.dir.publish(staged)
                self.dir.unstage(staged.signed.type)
                published.append(f"{staged.signed.type} v{staged.signed.version}")
        self.dir.publish(snapshot)
        published.append(f"snapshot v{snapshot.signed.version}")
        published.append(self._write_timestamp(stamp))
        return ", ".join(published)

    def timestamp(self, timestamp_key: Path, now: datetime) -> str:
        """Re-sign the timestamp over the current snapshot (keeps nodes from seeing a freeze)."""
        root = self._required(self.dir.root()).signed
        snapshot = self.dir.snapshot()
        if snapshot is None:
            raise RepoError("no snapshot is published; run `rms-repo publish` first")
        stamp = self._stamp(load_signer(timestamp_key), root, snapshot, now)
        return self._write_timestamp(stamp)

    def _stamp(
        self, signer: Signer, root: Root, snapshot: Metadata[Snapshot], now: datetime
    ) -> Metadata[Timestamp]:
        stamp = roles.timestamp_of(self.dir.timestamp(), snapshot, now, self.expiry)
        roles.sign(stamp, signer, root)
        return stamp

    def _write_timestamp(self, stamp: Metadata[Timestamp]) -> str:
        self.dir.publish_timestamp(stamp)
        return f"timestamp v{stamp.signed.version} (expires {stamp.signed.expires:%Y-%m-%d %H:%M})"

    def status(self) -> list[str]:
        """One line per role: version, expiry and signatures (published and staged)."""
        root = self.dir.root()
        staged_root = self.dir.staged_root()
        trust = root.signed if root else staged_root.signed if staged_root else None
        lines = [
            _status_line("root", root, root.signed if root else None),
            _status_line("targets", self.dir.targets(), trust),
            _status_line("snapshot", self.dir.snapshot(), trust),
            _status_line("timestamp", self.dir.timestamp(), trust),
            _status_line("staged root", staged_root, staged_root.signed if staged_root else None),
            _status_line("staged targets", self.dir.staged_targets(), trust),
        ]
        return [line for line in lines if line]


def _status_line(label: str, md: Metadata[M] | None, trust: Root | None) -> str:
    if md is None:
        return ""
    sigs = ""
    if trust is not None:
        result = roles.verification(trust, md.signed.type, md)
        sigs = f", signatures {len(result.signed)} of {result.threshold}"
    return f"{label}: v{md.signed.version}, expires {md.signed.expires:%Y-%m-%d %H:%M}{sigs}"
