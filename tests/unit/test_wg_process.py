"""Starting and stopping the backend's processes: SIGTERM, SIGKILL after the grace, reaped."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from rms.wg import process

SH = "/bin/sh"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 5 s")


async def test_stop_ends_a_process_that_obeys_sigterm() -> None:
    pid = process.spawn([SH, "-c", "exec sleep 30"], os.environ, None)
    assert alive(pid)
    await process.stop(pid, grace=5.0)
    assert not Path(f"/proc/{pid}").exists(), "stopped and reaped"


async def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    pid = process.spawn(
        [SH, "-c", f"trap '' TERM; touch {ready}; while :; do sleep 0.05; done"], os.environ, None
    )
    await until(ready.exists)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await process.stop(pid, grace=0.2)
    assert loop.time() - started < process.KILL_WAIT_S
    assert not Path(f"/proc/{pid}").exists()


async def test_stopping_a_child_that_already_exited_reaps_it() -> None:
    pid = process.spawn([SH, "-c", "exit 0"], os.environ, None)
    await until(lambda: not alive(pid))
    assert Path(f"/proc/{pid}").exists(), "a zombie until reaped"
    await process.stop(pid, grace=5.0)
    assert not Path(f"/proc/{pid}").exists()
    assert process.reap(pid) is None, "not our child any more"


def test_spawned_output_goes_to_the_log_and_the_tail_skips_the_banner(tmp_path: Path) -> None:
    log = tmp_path / "wg0.log"
    banner = "┌────┐\\n│ kernel │\\n└────┘\\nERROR: (wg0) one\\nERROR: (wg0) two"
    pid = process.spawn([SH, "-c", f"printf '{banner}\\n' >&2"], os.environ, log)
    while process.reap(pid) is None:
        time.sleep(0.01)
    assert process.log_tail(log) == "ERROR: (wg0) one | ERROR: (wg0) two"
    assert "no log" in process.log_tail(None)
    assert "no log at" in process.log_tail(tmp_path / "absent.log")
    assert oct(log.stat().st_mode & 0o777) == "0o600"
