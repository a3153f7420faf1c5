"""The WireGuard mesh controller and UAPI codec are sans-IO (STYLE.md 1): no I/O, no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import rms.wg

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
    "pyroute2",
    "structlog",
}
WG = Path(rms.wg.__file__).parent
SANS_IO = ("model.py", "changes.py", "errors.py", "uapi.py", "mesh.py")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_sans_io_modules_import_no_io_clock_or_pickle() -> None:
    for name in SANS_IO:
        roots = {module.split(".")[0] for module in imported_modules(WG / name)}
        assert not roots & FORBIDDEN, f"{name} imports {roots & FORBIDDEN}"


def test_sans_io_modules_import_only_sans_io_siblings() -> None:
    allowed = {f"rms.wg.{n.removesuffix('.py')}" for n in SANS_IO} | {"rms.wg.keys"}
    for name in SANS_IO:
        for module in imported_modules(WG / name):
            if module.startswith("rms"):
                assert module in allowed, f"{name} imports {module}"


def test_no_assert_on_peer_data_in_wg() -> None:
    for path in sorted(WG.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        assert not any(isinstance(n, ast.Assert) for n in ast.walk(tree)), path.name
