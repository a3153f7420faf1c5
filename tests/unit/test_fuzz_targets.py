"""The atheris fuzz targets run a fixed number of inputs without a crash (fuzz/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is not installed on this platform")

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"


@pytest.mark.parametrize(
    ("target", "runs"),
    [
        ("fuzz_wire.py", 100_000),  # the wire decoder: ~10 s here
        ("fuzz_documents.py", 50_000),  # issue 6's signed JSON documents: ~5 s here
    ],
)
def test_fuzz_target_runs_without_a_crash(target: str, runs: int, tmp_path: Path) -> None:
    # The corpus directory lets libFuzzer keep what it learns without touching the tree.
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    done = subprocess.run(
        [sys.executable, str(FUZZ / target), f"-runs={runs}", "-seed=1", str(corpus)],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard only
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"Done {runs} runs" in done.stderr
