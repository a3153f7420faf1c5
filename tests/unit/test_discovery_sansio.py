"""The discovery cores are sans-IO (STYLE.md 1): no I/O or clock imports, no pickle, no assert."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORES = [
    "rms/discovery/record.py",
    "rms/discovery/fields.py",
    "rms/discovery/feed.py",
    "vpn_discovery/store.py",
    "vpn_discovery/mirror.py",
]
FORBIDDEN = {
    "asyncio",
    "socket",
    "time",
    "select",
    "selectors",
    "threading",
    "subprocess",
    "pickle",
    "marshal",
    "shelve",
    "aiohttp",
    "ssl",
    "os",
    "pathlib",
    "urllib",
    "xml",  # XML is read only through defusedxml
}


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def runtime_imports(path: Path) -> set[str]:
    """Imports outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for child in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("core", CORES)
def test_cores_import_no_io_clock_or_pickle(core: str) -> None:
    roots = {name.split(".")[0] for name in runtime_imports(ROOT / core)}
    assert not roots & FORBIDDEN, f"{core} imports {roots & FORBIDDEN}"


@pytest.mark.parametrize("core", CORES)
def test_cores_import_only_other_cores_of_the_project(core: str) -> None:
    allowed = {c.removesuffix(".py").replace("/", ".") for c in CORES}
    allowed |= {"rms.discovery", "rms.policy", "rms.wg.keys", "rms.wire.envelope"}
    for name in imported_modules(ROOT / core):
        if name.split(".")[0] in ("rms", "vpn_discovery"):
            assert name in allowed, f"{core} imports {name}"


@pytest.mark.parametrize("core", CORES)
def test_no_assert_on_peer_data(core: str) -> None:
    tree = ast.parse((ROOT / core).read_text())
    assert not any(isinstance(n, ast.Assert) for n in ast.walk(tree)), core


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import time\nif TYPE_CHECKING:\n    import socket\n")
    assert runtime_imports(sample) == {"time"}
