"""bench/ledger.py runs and ends with one JSON line of its figures (never judged on speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ledger.py"


def test_bench_ledger_prints_a_table_then_json() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--entries", "50", "--rounds", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.splitlines()[-1])
    assert figures["bench"] == "ledger" and figures["entries"] == 50
    assert figures["replay_per_s"] > 0 and figures["baseline_per_s"] > 0
    expected = figures["replay_per_s"] / figures["baseline_per_s"]
    assert abs(figures["ratio"] - expected) < 0.01
