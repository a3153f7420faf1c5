"""The node's side of the component library: refresh, verify, download, hand to an installer.

Verification is python-tuf's ngclient (The Update Framework specification, section 5,
"Detailed client workflow"): root chain, timestamp, snapshot, targets, each checked for
signature threshold, version (never lower than what this node has seen) and expiry; then the
target's length and hashes. Only a target that passed all of it reaches the installer, and
the installer step checks the downloaded file's length and hashes once more right before.

The node's trust anchor is the root.json shipped with the install (`[update] trusted_root`);
newer roots are accepted only through the chain each previous root signs. What the node has
seen (the newest root, timestamp and snapshot) stays in `cache_dir/metadata/`, which is what
makes a rollback or a replayed old timestamp visible across runs.

Time is injectable (`now`): ngclient reads the clock once, when its trusted set is made; the
client replaces that reading with `now` before anything is checked against it.
"""

from __future__ import annotations

import enum
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.api.serialization import DeserializationError
from tuf.ngclient import Updater, UpdaterConfig

from rms.update.fetcher import METADATA_URL, TARGETS_URL, LibraryFetcher, Source
from rms.update.roles import MAX_ROOT_BYTES, check_target_name
from rms.update.store import read_capped, write_atomic

R = TypeVar("R")
log = structlog.get_logger("rms.update")
MAX_TIMESTAMP_BYTES = 4 * 1024  # ~1 KiB
MAX_SNAPSHOT_BYTES = 64 * 1024  # one entry per targets role
MAX_TARGETS_BYTES = 1024 * 1024  # ~500 bytes per target


class Reason(enum.Enum):
    """Why the library was refused; the attacks of docs/updates.md map onto these."""

    EXPIRED = "expired"  # a frozen or stale repository
    ROLLBACK = "rollback"  # a version lower than one this node has seen
    SIGNATURES = "signatures"  # below threshold, forged, or by a key root does not list
    TAMPERED = "tampered"  # length or hash differs from what signed metadata says
    OVERSIZED = "oversized"  # more bytes than the signed length or the metadata cap
    MALFORMED = "malformed"  # not TUF metadata
    UNKNOWN_TARGET = "unknown_target"  # no signed target of that name
    INVALID = "invalid"  # any other refusal by the TUF workflow


class UpdateRefused(Exception):
    """The library's data did not verify; nothing was installed."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class LibraryUnavailable(Exception):
    """No source served the files; nothing was installed, try again later."""


class Installer(Protocol):
    """The step that puts a verified target to use (dpkg, a file copy, a recorder in tests)."""

    def install(self, name: str, path: Path, target: TargetFile) -> None:
        """Install the verified file at `path`; raise InstallError on failure."""
        ...


@dataclass(frozen=True)
class Available:
    """One signed target of the library."""

    name: str
    length: int
    sha256: str
    custom: dict[str, Any]


_REASONS: tuple[tuple[type[Exception], Reason], ...] = (
    (tuf_errors.ExpiredMetadataError, Reason.EXPIRED),
    (tuf_errors.BadVersionNumberError, Reason.ROLLBACK),
    (tuf_errors.UnsignedMetadataError, Reason.SIGNATURES),
    (tuf_errors.LengthOrHashMismatchError, Reason.TAMPERED),
    (tuf_errors.DownloadLengthMismatchError, Reason.OVERSIZED),
    (DeserializationError, Reason.MALFORMED),
    (tuf_errors.RepositoryError, Reason.INVALID),
)


def refusal(exc: Exception) -> UpdateRefused | LibraryUnavailable:
    """ngclient's error as the client's: a refusal (the data is bad) or unavailability."""
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return UpdateRefused(reason, str(exc) or type(exc).__name__)
    return LibraryUnavailable(f"the component library could not be read: {exc}")


class Library:
    """The component library as one node sees it."""

    def __init__(self, trusted_root: Path, cache_dir: Path, source: Source) -> None:
        self.trusted_root = trusted_root
        self.cache_dir = cache_dir
        self.source = source
        self.config = UpdaterConfig(
            root_max_length=MAX_ROOT_BYTES,
            timestamp_max_length=MAX_TIMESTAMP_BYTES,
            snapshot_max_length=MAX_SNAPSHOT_BYTES,
            targets_max_length=MAX_TARGETS_BYTES,
        )

    def _refreshed(self, source: Source, now: datetime) -> Updater:
        root = read_capped(self.trusted_root, MAX_ROOT_BYTES, "trusted root")
        self.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # what dpkg will read
        metadata = self.cache_dir / "metadata"
        metadata.mkdir(mode=0o700, exist_ok=True)
        try:
            updater = Updater(
                str(metadata),
                METADATA_URL,
                str(self.cache_dir / "targets"),
                TARGETS_URL,
                LibraryFetcher(source),
                self.config,
                bootstrap=root,
            )
            _pin_clock(updater, now)
            updater.refresh()
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            raise refusal(exc) from None
        return updater

    def _from_each(self, action: Callable[[Source], R]) -> R:
        """`action` on each source in turn (each mirror alone) until one passes every check.

        One rogue or stale mirror must not stop a node from updating through the others; a
        refused mirror leaves nothing behind (ngclient keeps only metadata it verified)."""
        refused: list[str] = []
        first: UpdateRefused | None = None
        for source in self.source.each():
            try:
                return action(source)
            except UpdateRefused as exc:
                first = first or exc
                refused.append(f"{source.describe()}: {exc}")
                log.warning("update.refused", source=source.describe(), reason=exc.reason.value)
            except LibraryUnavailable as exc:
                refused.append(f"{source.describe()}: {exc}")
                log.info("update.unavailable", source=source.describe(), error=str(exc))
            finally:
                source.close()
        if first is not None:
            raise UpdateRefused(first.reason, "; ".join(refused))
        raise LibraryUnavailable("; ".join(refused) or "no source to read from")

    def check(self, now: datetime) -> list[Available]:
        """Refresh the metadata and list every signed target."""
        self._from_each(lambda source: self._refreshed(source, now))
        # ngclient persisted the targets.json it just verified; read the same bytes back.
        data = read_capped(self.cache_dir / "metadata" / "targets.json", MAX_TARGETS_BYTES, "")
        targets = Metadata[Targets].from_bytes(data).signed.targets
        return [_available(t) for _, t in sorted(targets.items())]

    def fetch(self, name: str, now: datetime) -> tuple[Path, TargetFile]:
        """Refresh, then download target `name` and verify it; returns the file and its info."""
        check_target_name(name)
        return self._from_each(lambda source: self._fetch(source, name, now))

    def _fetch(self, source: Source, name: str, now: datetime) -> tuple[Path, TargetFile]:
        updater = self._refreshed(source, now)
        try:
            info = updater.get_targetinfo(name)
            if info is None:
                raise UpdateRefused(Reason.UNKNOWN_TARGET, f"no signed target named {name!r}")
            return Path(updater.download_target(info)), info
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            raise refusal(exc) from None

    def install(self, name: str, installer: Installer, now: datetime) -> Available:
        """Fetch target `name`, check it once more, and only then hand it to `installer`."""
        path, info = self.fetch(name, now)
        try:
            with path.open("rb") as f:
                info.verify_length_and_hashes(f)
        except tuf_errors.LengthOrHashMismatchError as exc:
            raise UpdateRefused(Reason.TAMPERED, f"{path} changed after download: {exc}") from None
        installer.install(name, path, info)
        got = _available(info)
        log.info("update.installed", target=name, length=got.length, sha256=got.sha256)
        return got


def _available(target: TargetFile) -> Available:
    custom = target.unrecognized_fields.get("custom")
    return Available(
        target.path,
        target.length,
        target.hashes.get("sha256", ""),
        dict(custom) if isinstance(custom, dict) else {},
    )


def _pin_clock(updater: Updater, now: datetime) -> None:
    """Make ngclient check expiry against `now` (it read the clock when it was made)."""
    trusted = getattr(updater, "_trusted_set", None)
    if trusted is None or not hasattr(trusted, "reference_time"):
        raise RuntimeError("this python-tuf has no reference_time to pin; see docs/updates.md")
    trusted.reference_time = now


# --- installers: what happens to a target once it is verified ---------------------------
#
# `dpkg -i` for a .deb (Debian, the Raspberry Pi image), `opkg install` for an .ipk (OpenWRT),
# an atomic copy for documents such as the signed policy. An installer receives only a path
# the client has verified; it trusts nothing else about it.

COMMAND_TIMEOUT_S = 600.0
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
POLICY_TARGET = "policy/policy.json"  # the signed policy document (rms.policydoc)


class InstallError(Exception):
    """The install step failed; the verified file is kept in the cache."""


class CommandInstaller:
    """Runs a package manager on the verified file."""

    def __init__(self, argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.argv = tuple(argv)
        self.timeout_s = timeout_s

    def install(self, name: str, path: Path, target: TargetFile) -> None:
        """`argv… path`; InstallError with the tool's own message if it fails."""
        try:
            done = subprocess.run(
                [*self.argv, str(path)],
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InstallError(f"{self.argv[0]} could not install {name}: {exc}") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise InstallError(f"{self.argv[0]} refused {name}: {' / '.join(tail)}")


class DpkgInstaller(CommandInstaller):
    """`dpkg -i PACKAGE.deb`."""

    def __init__(self) -> None:
        super().__init__(("dpkg", "-i"))


class OpkgInstaller(CommandInstaller):
    """`opkg install PACKAGE.ipk`."""

    def __init__(self) -> None:
        super().__init__(("opkg", "install"))


class FileInstaller:
    """Copies the verified file to `directory/name` atomically (mode 0644)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def install(self, name: str, path: Path, target: TargetFile) -> None:
        """Write the target's bytes under its name (its path below the directory)."""
        if target.length > MAX_DOCUMENT_BYTES:
            raise InstallError(f"{name} is {target.length} bytes; documents stop at 16 MiB")
        data = path.read_bytes()
        try:
            write_atomic(self.directory / name, data)
        except OSError as exc:
            raise InstallError(f"cannot write {self.directory / name}: {exc}") from None


class FileAt:
    """Writes one target to one fixed path (the policy document where the daemon reads it)."""

    def __init__(self, path: Path) -> None:
        self.files = FileInstaller(path.parent)
        self.name = path.name

    def install(self, name: str, path: Path, target: TargetFile) -> None:
        """Write the target's bytes to the configured path."""
        self.files.install(self.name, path, target)


class ByKind:
    """Chooses an installer by the target's name, then its suffix, else `default`."""

    def __init__(
        self,
        by_suffix: Mapping[str, Installer],
        default: Installer,
        by_name: Mapping[str, Installer] | None = None,
    ) -> None:
        self.by_suffix = dict(by_suffix)
        self.by_name = dict(by_name or {})
        self.default = default

    def install(self, name: str, path: Path, target: TargetFile) -> None:
        """Hand the file to the installer for its kind."""
        chosen = self.by_name.get(name) or self.by_suffix.get(Path(name).suffix, self.default)
        chosen.install(name, path, target)


def node_installer(documents: Path, policy_document: Path) -> ByKind:
    """What a node uses: dpkg for .deb, opkg for .ipk, the policy document to where the
    daemon reads it, and any other document into `documents`."""
    return ByKind(
        {".deb": DpkgInstaller(), ".ipk": OpkgInstaller()},
        FileInstaller(documents),
        {POLICY_TARGET: FileAt(policy_document)},
    )
