"""The swarm's helpers: figures, loopback addresses, and reading a worker's phase lines."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rms.dht.routing import subnet_of
from rms.dht.swarm import LossyLoopback, host_of, percentile, summary


def worker(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def test_every_node_has_a_subnet_of_its_own() -> None:
    hosts = [host_of(i) for i in range(1000)]
    assert len({subnet_of(h) for h in hosts}) == 1000
    assert all(h.startswith("127.") and h.endswith(".1") for h in hosts)


def test_percentiles_and_summary() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)
    figures = summary([0.010, 0.020, 0.030], 4)
    assert figures == {"success_rate": 0.75, "p50_ms": 20.0, "p95_ms": 29.0}
    assert summary([], 0)["success_rate"] == 0.0


def test_a_phase_line_is_read_as_a_json_object() -> None:
    proc = worker('print(\'{"phase": 0, "success_rate": 1.0}\', flush=True)')
    try:
        assert LossyLoopback.read_line(proc, 30) == {"phase": 0, "success_rate": 1.0}
    finally:
        finish(proc)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("print('[1, 2]', flush=True)", ValueError),  # JSON, not an object
        ("print('not json', flush=True)", ValueError),  # malformed
        ("print('{\"phase\": ' + '1' * 100000, flush=True)", ValueError),  # oversized, cut
        ("pass", TimeoutError),  # exits without a word
        ("import time; time.sleep(30)", TimeoutError),  # silent
    ],
)
def test_a_bad_or_missing_phase_line_is_an_error_not_a_hang(
    code: str, error: type[Exception]
) -> None:
    proc = worker(code)
    try:
        with pytest.raises(error):
            LossyLoopback.read_line(proc, 2)
    finally:
        finish(proc)
