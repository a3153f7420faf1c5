"""Installers: what happens to a target after the client verified it (rms.update.client).

- `DpkgInstaller`: `dpkg -i` for a .deb (Debian, the Raspberry Pi image).
- `OpkgInstaller`: `opkg install` for an .ipk (OpenWRT).
- `FileInstaller`: an atomic copy into a directory, for documents such as the signed policy.
- `ByKind`: picks one of them by the target name's suffix.

An installer receives only a path the client has verified; it trusts nothing else about it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tuf.api.metadata import TargetFile

from rms.update.client import Installer
from rms.update.store import write_atomic

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
