"""Bounded reads of a bridge's files: one thread per key however often asked, hung after a
while of silence, forgotten with the bridge. A blocked read stands in for a stopped bridge
(tests/integration/test_cfs_healing.py stops a real one)."""

from __future__ import annotations

import threading

import pytest

from cfs.initiator.reads import Reads


async def test_a_silent_read_is_slow_then_hung_and_never_starts_a_second_thread() -> None:
    reads, gate, started = Reads(hung_s=0.2), threading.Event(), []

    def blocked() -> str:
        started.append(1)
        gate.wait(5)
        return "ok"

    try:
        assert await reads.read("b/state", blocked, 0.05) is None
        assert not reads.hung("b/state")
        for _ in range(5):
            assert await reads.read("b/state", blocked, 0.05) is None
        assert len(started) == 1 and reads.hung("b/state")
        assert not reads.hung("other/state")
    finally:
        gate.set()
    assert await reads.read("b/state", blocked, 1.0) == "ok"  # the same read, answered
    assert not reads.hung("b/state") and len(started) == 1


async def test_an_error_is_an_answer_and_forget_drops_a_bridge() -> None:
    reads = Reads(hung_s=0.0)

    def failing() -> str:
        raise OSError(5, "EIO")

    with pytest.raises(OSError):
        await reads.read("b/disk", failing, 1.0)
    assert not reads.hung("b/disk")
    gate = threading.Event()
    assert await reads.read("b/disk", lambda: gate.wait(5), 0.01) is None
    assert reads.hung("b/disk")
    reads.forget("b/")
    assert not reads.hung("b/disk")
    gate.set()
