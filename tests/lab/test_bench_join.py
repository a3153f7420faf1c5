"""bench/join.py runs end to end on a small lab and ends with its JSON line of figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.timeout(400),
]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "join.py"


def test_join_bench_prints_its_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--nodes", "4"],
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "join"
    assert figures["joins"] >= 4
    for key in ("p50_s", "p95_s", "baseline_p50_s", "ratio_p50", "guest_bytes_p50"):
        assert figures[key] > 0, key
