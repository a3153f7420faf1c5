"""bench/wire.py runs and ends with one JSON line of its figures (never judged on speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "wire.py"
KEYS = {
    "bench",
    "encode_per_s",
    "baseline_sign_per_s",
    "encode_ratio",
    "decode_per_s",
    "baseline_verify_per_s",
    "decode_ratio",
}


def test_bench_wire_prints_a_table_then_json() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--iterations", "200", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "encode + sign" in done.stdout
    assert "decode + verify" in done.stdout
    figures = json.loads(lines[-1])
    assert set(figures) == KEYS
    assert figures["bench"] == "wire"
    for key in KEYS - {"bench"}:
        assert isinstance(figures[key], int | float)
        assert figures[key] > 0
    assert sum(line.lstrip().startswith("{") for line in lines) == 1


def test_bench_wire_refuses_nonsense_arguments() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--iterations", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "at least 1" in done.stderr
