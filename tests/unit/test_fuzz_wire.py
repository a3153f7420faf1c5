"""The wire fuzz target runs 100 000 inputs without a crash (fuzz/fuzz_wire.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is not installed on this platform")

TARGET = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_wire.py"


def test_fuzz_wire_100k_runs(tmp_path: Path) -> None:
    # The corpus directory lets libFuzzer keep what it learns without touching the tree.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    done = subprocess.run(
        [sys.executable, str(TARGET), "-runs=100000", "-seed=1", str(corpus)],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard only: ~10 s here, 100k runs
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Done 100000 runs" in done.stderr
