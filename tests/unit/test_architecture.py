"""The dependency rule of DESIGN.md, checked on the source: who may import whom."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("vpn_discovery", "volume_provider", "cfs")

# The library parts of rms that the services may use: identity, the wire format, the control
# API client, logging, the shared command-line front, and the discovery record and client, the
# policy constants, overlay addressing and WireGuard key types (issue 3). Never the daemon, the
# lab or the CLI.
RMS_LIBRARY = (
    "rms",
    "rms.identity",
    "rms.wire",
    "rms.control.client",
    "rms.logs",
    "rms.servicecli",
    "rms.tomlconfig",
    "rms.atomicfile",  # one way to replace a state file so that a crash never leaves half
    "rms.spawn",
    "rms.discovery",
    "rms.policy",
    "rms.overlay",
    "rms.wg.keys",
    "rms.volumes",  # the volume protocol, shared by volume_provider and cfs (issue 5)
    "rms.wg",  # the WireGuard driver, for the nested per-volume links (issue 5)
    "rms.net.framing",  # one length-prefixed frame per volume message (issue 5)
    "rms.vpn.locality",  # location/network names become the same UUIDs as in the RMS
)


def imported_modules(path: Path) -> Iterator[str]:
    """Every module an `import` or `from … import` in this file names (absolute only)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def package_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def is_library(module: str) -> bool:
    """`rms` itself (its version) and the library modules with everything below them."""
    nested = any(module.startswith(lib + ".") for lib in RMS_LIBRARY if lib != "rms")
    return module in RMS_LIBRARY or nested


def top(module: str) -> str:
    return module.split(".", maxsplit=1)[0]


@pytest.mark.parametrize("service", SERVICES)
def test_services_import_only_rms_library_and_never_each_other(service: str) -> None:
    bad = []
    for path in package_files(service):
        for module in imported_modules(path):
            other = top(module) in SERVICES and top(module) != service
            if other or (top(module) == "rms" and not is_library(module)):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not bad, "\n".join(bad)


def test_rms_imports_none_of_the_services() -> None:
    bad = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in package_files("rms")
        for module in imported_modules(path)
        if top(module) in SERVICES
    ]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from rms.daemon import Daemon\nimport cfs.cli\n")
    found = set(imported_modules(sample))
    assert "rms.daemon" in found and "cfs.cli" in found
    assert not is_library("rms.daemon")
    assert is_library("rms.wire.envelope")
