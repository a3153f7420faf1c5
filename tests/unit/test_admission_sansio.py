"""Admission, membership and framing cores are sans-IO (STYLE.md 1); adapters are the rest."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "rms"
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
}
CORES = [
    "admission/__init__.py",
    "admission/events.py",
    "admission/fit.py",
    "admission/guardian.py",
    "admission/keybox.py",
    "admission/newcomer.py",
    "admission/planner.py",
    "admission/slot.py",
    "membership/__init__.py",
    "membership/document.py",
    "membership/events.py",
    "membership/issuer.py",
    "membership/ledger.py",
    "membership/liveness.py",
    "membership/roster.py",
    "membership/sync.py",
    "net/__init__.py",
    "net/framing.py",
    "wire/messages/admission.py",
    "wire/messages/roster.py",
]
ADAPTERS = [
    "admission/server.py",
    "admission/client.py",
    "membership/service.py",
    "net/streams.py",
]


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("name", CORES)
def test_core_imports_no_io_clock_or_pickle(name: str) -> None:
    roots = {m.split(".")[0] for m in imported_modules(ROOT / name)}
    assert not roots & FORBIDDEN, f"{name} imports {roots & FORBIDDEN}"


@pytest.mark.parametrize("name", CORES)
def test_core_imports_no_adapter(name: str) -> None:
    adapters = {"rms." + a.removesuffix(".py").replace("/", ".") for a in ADAPTERS}
    assert not imported_modules(ROOT / name) & adapters


@pytest.mark.parametrize("name", CORES)
def test_no_assert_on_peer_data_in_cores(name: str) -> None:
    tree = ast.parse((ROOT / name).read_text(), filename=name)
    assert not any(isinstance(n, ast.Assert) for n in ast.walk(tree))


def test_every_module_is_listed_as_core_or_adapter() -> None:
    found = {
        str(p.relative_to(ROOT))
        for package in ("admission", "membership", "net")
        for p in (ROOT / package).rglob("*.py")
    }
    known = set(CORES) | set(ADAPTERS)
    assert found <= known, f"unclassified: {sorted(found - known)}"


def test_the_checker_sees_an_io_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import asyncio\nfrom time import monotonic\n")
    assert imported_modules(sample) == {"asyncio", "time"}
