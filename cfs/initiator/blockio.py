"""Byte-range reads and writes mapped onto whole-block SCSI I/O, with read-modify-write.

A FUSE file takes any offset and length; a SCSI LUN takes whole blocks. `BlockFile` turns
one into the other: reads round out to blocks and slice, writes that do not cover whole
blocks first read the partial head and tail block. Transfers are cut into chunks of at most
`max_transfer` bytes so one request never exceeds what a target accepts in one command.
Pure apart from the `BlockDevice` it is given, so it is unit-tested over memory.
"""

from __future__ import annotations

import ctypes
from typing import Protocol

MAX_TRANSFER = 1 << 20


class BlockDevice(Protocol):
    """Whole-block I/O on one LUN (`cfs.initiator.libiscsi.Session` in production)."""

    def read(self, lba: int, buf: ctypes.Array[ctypes.c_char]) -> None:
        """Fill buf (a multiple of the block size) from lba on."""
        ...

    def write(self, lba: int, buf: ctypes.Array[ctypes.c_char]) -> None:
        """Write buf (a multiple of the block size) from lba on."""
        ...


class BlockFile:
    """A LUN seen as a fixed-size byte file."""

    def __init__(
        self, dev: BlockDevice, block_size: int, size: int, max_transfer: int = MAX_TRANSFER
    ) -> None:
        self.dev, self.bs, self.size = dev, block_size, size
        # Whole blocks per command, at least one.
        self.chunk = max(block_size, max_transfer - max_transfer % block_size)

    def read(self, offset: int, length: int) -> bytes:
        """Up to length bytes at offset; short at the end of the LUN, empty past it."""
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        first, last = offset // self.bs, (end + self.bs - 1) // self.bs
        data = self._read_blocks(first, last - first)
        start = offset - first * self.bs
        return data[start : start + end - offset]

    def write(self, offset: int, data: bytes) -> int:
        """Write data at offset (read-modify-write at unaligned edges); bytes written."""
        if offset + len(data) > self.size:
            raise ValueError("write past the end of the LUN")
        if not data:
            return 0
        end = offset + len(data)
        first, last = offset // self.bs, (end + self.bs - 1) // self.bs
        head, tail = offset - first * self.bs, last * self.bs - end
        if head == 0 and tail == 0:
            self._write_blocks(first, data)
            return len(data)
        image = bytearray(self._edges(first, last, head, tail))
        image[head : head + len(data)] = data
        self._write_blocks(first, bytes(image))
        return len(data)

    def _edges(self, first: int, last: int, head: int, tail: int) -> bytes:
        """The span first..last with its partial first and last blocks read from the LUN."""
        count = last - first
        image = bytearray(count * self.bs)
        if head:
            image[: self.bs] = self._read_blocks(first, 1)
        if tail and (count > 1 or not head):
            image[-self.bs :] = self._read_blocks(last - 1, 1)
        return bytes(image)

    def _read_blocks(self, lba: int, count: int) -> bytes:
        out = bytearray()
        per = self.chunk // self.bs
        for at in range(lba, lba + count, per):
            buf = ctypes.create_string_buffer(min(per, lba + count - at) * self.bs)
            self.dev.read(at, buf)
            out += buf.raw
        return bytes(out)

    def _write_blocks(self, lba: int, data: bytes) -> None:
        for pos in range(0, len(data), self.chunk):
            piece = data[pos : pos + self.chunk]
            buf = ctypes.create_string_buffer(piece, len(piece))
            self.dev.write(lba + pos // self.bs, buf)
