"""rms.wire is a sans-IO protocol core (STYLE.md 1): no I/O or clock imports, no pickle."""

from __future__ import annotations

import ast
from pathlib import Path

import rms.wire

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
WIRE = Path(rms.wire.__file__).parent


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_wire_modules_import_no_io_clock_or_pickle() -> None:
    sources = sorted(WIRE.rglob("*.py"))
    assert len(sources) >= 7
    for path in sources:
        roots = {name.split(".")[0] for name in imported_modules(path)}
        assert not roots & FORBIDDEN, f"{path.relative_to(WIRE)} imports {roots & FORBIDDEN}"


def test_wire_uses_only_absolute_imports_within_rms_wire() -> None:
    for path in sorted(WIRE.rglob("*.py")):
        for name in imported_modules(path):
            if name.startswith("rms"):
                assert name.startswith("rms.wire"), f"{path.name} imports {name}"


def test_no_assert_on_peer_data_in_wire() -> None:
    for path in sorted(WIRE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        assert not any(isinstance(n, ast.Assert) for n in ast.walk(tree)), path.name
