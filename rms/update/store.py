"""The component library's repository on disk, and the key files of its signers.

Layout of a repository directory (docs/updates.md)::

    staged/root.json, staged/targets.json   being signed by the offline key holders
    metadata/N.root.json                    every root version (clients walk the chain)
    metadata/N.targets.json, N.snapshot.json
    metadata/timestamp.json                 the only file without a version in its name
    targets/<sha256>.<name>                 the targets, named by their hash

`metadata/` and `targets/` are what mirrors serve, as they are (consistent snapshots: a file
never changes once written, so a mirror copying them mid-release serves a consistent set).
`staged/` never leaves the release machine. Key files are PEM (PKCS#8 private keys, mode
0600; SubjectPublicKeyInfo public keys); the key id is always computed from the key itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from rms.update.roles import M, RepoError

MAX_KEY_FILE = 16 * 1024
MAX_METADATA_FILE = 4 * 1024 * 1024  # the client's cap on targets.json is 5 MB (ngclient)
_VERSIONED = re.compile(r"([1-9][0-9]{0,9})\.(root|targets|snapshot)\.json")


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` so that a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise


def read_capped(path: Path, cap: int, what: str) -> bytes:
    """The bytes of `path`, refusing a missing, unreadable or oversized file."""
    try:
        with path.open("rb") as f:
            data = f.read(cap + 1)
    except OSError as exc:
        raise RepoError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > cap:
        raise RepoError(f"{what} {path} is larger than {cap} bytes")
    return data


# --- key files -------------------------------------------------------------------------


def generate_key(path: Path) -> SSlibKey:
    """A new ed25519 key: private PEM at `path` (0600), public PEM at `path`.pub."""
    if path.exists():
        raise RepoError(f"{path} exists; a key file is never overwritten")
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(path, pem, 0o600)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomic(public_path(path), public)
    return SSlibKey.from_crypto(private.public_key())


def public_path(key_file: Path) -> Path:
    """Where generate_key puts the public half of `key_file`."""
    return key_file.with_name(key_file.name + ".pub")


def load_signer(path: Path) -> CryptoSigner:
    """The signer of an ed25519 private key file."""
    data = read_capped(path, MAX_KEY_FILE, "key file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise RepoError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise RepoError(f"{path} is not an ed25519 key")
    return CryptoSigner(key)


def load_public_key(path: Path) -> SSlibKey:
    """The public key in a PEM file (a `.pub` written by generate_key)."""
    data = read_capped(path, MAX_KEY_FILE, "public key file")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise RepoError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise RepoError(f"{path} is not an ed25519 public key")
    return SSlibKey.from_crypto(key)


# --- the repository directory ---------------------------------------------------------


class RepoDir:
    """One repository directory: staged, published metadata and targets."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.staged_dir = path / "staged"
        self.metadata_dir = path / "metadata"
        self.targets_dir = path / "targets"

    def exists(self) -> bool:
        """Whether anything has been published or staged here."""
        return any(d.is_dir() and any(d.iterdir()) for d in (self.staged_dir, self.metadata_dir))

    def latest_version(self, role: str) -> int:
        """The highest published version of a versioned role, 0 if none."""
        versions = [0]
        if self.metadata_dir.is_dir():
            for entry in self.metadata_dir.iterdir():
                match = _VERSIONED.fullmatch(entry.name)
                if match and match.group(2) == role:
                    versions.append(int(match.group(1)))
        return max(versions)

    def _load(self, path: Path, kind: type[M]) -> Metadata[M] | None:
        if not path.exists():
            return None
        data = read_capped(path, MAX_METADATA_FILE, "metadata file")
        try:
            md = Metadata[kind].from_bytes(data)  # type: ignore[valid-type]
        except (DeserializationError, RepositoryError, ValueError) as exc:
            raise RepoError(f"{path} is not TUF metadata: {exc}") from None
        if not isinstance(md.signed, kind):
            raise RepoError(f"{path} holds {md.signed.type} metadata, not {kind.type}")
        return md

    def _latest(self, kind: type[M]) -> Metadata[M] | None:
        version = self.latest_version(kind.type)
        return (
            self._load(self.metadata_dir / f"{version}.{kind.type}.json", kind) if version else None
        )

    def root(self) -> Metadata[Root] | None:
        """The newest published root."""
        return self._latest(Root)

    def targets(self) -> Metadata[Targets] | None:
        """The newest published targets."""
        return self._latest(Targets)

    def snapshot(self) -> Metadata[Snapshot] | None:
        """The newest published snapshot."""
        return self._latest(Snapshot)

    def timestamp(self) -> Metadata[Timestamp] | None:
        """The published timestamp."""
        return self._load(self.metadata_dir / "timestamp.json", Timestamp)

    def staged_root(self) -> Metadata[Root] | None:
        """The root being signed, if any."""
        return self._load(self.staged_dir / "root.json", Root)

    def staged_targets(self) -> Metadata[Targets] | None:
        """The targets being signed, if any."""
        return self._load(self.staged_dir / "targets.json", Targets)

    def stage(self, md: Metadata[Root] | Metadata[Targets]) -> Path:
        """Write `md` to staged/ for the key holders to sign."""
        path = self.staged_dir / f"{md.signed.type}.json"
        write_atomic(path, md.to_bytes())
        return path

    def unstage(self, role: str) -> None:
        """Drop the staged metadata of `role` (once published)."""
        (self.staged_dir / f"{role}.json").unlink(missing_ok=True)

    def publish(self, md: Metadata[Root] | Metadata[Targets] | Metadata[Snapshot]) -> Path:
        """Write `md` as metadata/VERSION.ROLE.json; an existing version is never replaced."""
        path = self.metadata_dir / f"{md.signed.version}.{md.signed.type}.json"
        if path.exists():
            raise RepoError(f"{path} is already published; versions never change")
        write_atomic(path, md.to_bytes())
        return path

    def publish_timestamp(self, md: Metadata[Timestamp]) -> Path:
        """Write metadata/timestamp.json (the one file that is replaced)."""
        path = self.metadata_dir / "timestamp.json"
        write_atomic(path, md.to_bytes())
        return path

    def write_target(self, name: str, sha256: str, data: bytes) -> Path:
        """Store a target's bytes under its hash-prefixed name (consistent snapshots)."""
        directory, _, base = name.rpartition("/")
        path = self.targets_dir / directory / f"{sha256}.{base}"
        write_atomic(path, data)
        return path
