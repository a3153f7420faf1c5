"""The signed-documents fuzz target runs 50 000 inputs without a crash (fuzz/fuzz_documents.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is not installed on this platform")

TARGET = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_documents.py"


def test_fuzz_documents_50k_runs(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    done = subprocess.run(
        [sys.executable, str(TARGET), "-runs=50000", "-seed=1", str(corpus)],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard only: ~5 s here
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Done 50000 runs" in done.stderr
