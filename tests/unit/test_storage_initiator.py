"""Byte-to-block mapping of the bridge, initiator secret hygiene, and open-iscsi's clear failure.

The block device here is memory: these tests are about `BlockFile`'s arithmetic, not about
libiscsi, which the integration tests drive for real.
"""

from __future__ import annotations

import ctypes
import random
import shutil
from pathlib import Path

import pytest

from cfs.initiator.blockio import BlockFile
from cfs.initiator.driver import InitiatorError, VolumeTarget
from cfs.initiator.libiscsi import LoginParams
from cfs.initiator.openiscsi import OpenIscsiDriver

SECRET = "correct-horse-battery"


class MemoryLun:
    """Whole-block I/O over a bytearray, recording each command's (lba, bytes)."""

    def __init__(self, blocks: int, bs: int = 512) -> None:
        self.data, self.bs = bytearray(blocks * bs), bs
        self.calls: list[tuple[str, int, int]] = []

    def read(self, lba: int, buf: ctypes.Array[ctypes.c_char]) -> None:
        assert len(buf) % self.bs == 0
        self.calls.append(("r", lba, len(buf)))
        ctypes.memmove(buf, bytes(self.data[lba * self.bs : lba * self.bs + len(buf)]), len(buf))

    def write(self, lba: int, buf: ctypes.Array[ctypes.c_char]) -> None:
        assert len(buf) % self.bs == 0
        self.calls.append(("w", lba, len(buf)))
        self.data[lba * self.bs : lba * self.bs + len(buf)] = buf.raw


def test_random_unaligned_io_matches_a_plain_buffer() -> None:
    rng = random.Random(5)
    lun = MemoryLun(64)
    disk = BlockFile(lun, 512, 64 * 512, max_transfer=2048)
    model = bytearray(64 * 512)
    for _ in range(300):
        off = rng.randrange(0, len(model))
        size = rng.randrange(0, min(5000, len(model) - off) + 1)
        if rng.random() < 0.5:
            data = rng.randbytes(size)
            assert disk.write(off, data) == size
            model[off : off + size] = data
        else:
            assert disk.read(off, size) == bytes(model[off : off + size])
    assert lun.data == model
    assert all(n <= 2048 for _, _, n in lun.calls)


def test_aligned_write_needs_no_read_and_unaligned_reads_only_edges() -> None:
    lun = MemoryLun(16)
    disk = BlockFile(lun, 512, 16 * 512)
    disk.write(1024, b"x" * 1024)
    assert lun.calls == [("w", 2, 1024)]
    lun.calls.clear()
    disk.write(1000, b"y" * 2000)  # head and tail partial, in different blocks
    assert lun.calls == [("r", 1, 512), ("r", 5, 512), ("w", 1, 2560)]
    lun.calls.clear()
    disk.write(10, b"z")  # head and tail in one block: read it once
    assert lun.calls == [("r", 0, 512), ("w", 0, 512)]


def test_reads_stop_at_the_end_and_writes_past_it_fail() -> None:
    disk = BlockFile(MemoryLun(4), 512, 2048)
    assert disk.read(2000, 100) == bytes(48)
    assert disk.read(5000, 10) == b""
    with pytest.raises(ValueError, match="past the end"):
        disk.write(2040, b"123456789")


def test_secrets_never_print() -> None:
    t = VolumeTarget("10.0.0.1:3260", "iqn.2024-01.test:t1", 1, "u1", SECRET)
    p = LoginParams("10.0.0.1:3260", "iqn.2024-01.test:t1", 1, "iqn.x", "u1", SECRET)
    assert SECRET not in repr(t) and SECRET not in str(t) and SECRET not in repr(p)
    assert t.slug == "iqn.2024-01.test_t1-lun1"


async def test_open_iscsi_fails_clearly_when_iscsiadm_or_the_kernel_is_missing(
    tmp_path: Path,
) -> None:
    t = VolumeTarget("10.0.0.1:3260", "iqn.2024-01.test:t1", 1, "u1", SECRET)
    missing = OpenIscsiDriver(iscsiadm=str(tmp_path / "iscsiadm"))
    with pytest.raises(InitiatorError, match="install open-iscsi") as e:
        await missing.attach(t)
    assert SECRET not in str(e.value)
    assert not (await missing.state(t)).attached
    if shutil.which("iscsiadm") is not None:
        with pytest.raises(InitiatorError) as real:
            await OpenIscsiDriver().attach(t)
        assert SECRET not in str(real.value)
    assert OpenIscsiDriver().device(t) == Path(
        "/dev/disk/by-path/ip-10.0.0.1:3260-iscsi-iqn.2024-01.test:t1-lun-1"
    )
