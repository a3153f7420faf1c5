"""asyncio helpers for framed envelopes on TCP streams; errors become `StreamError` here.

The sans-IO reader lives in `rms.net.framing`; these two coroutines are for adapters that
read one frame at a time (member RPC, tests). OS errors, timeouts and broken framing are
translated once, at this boundary, into `StreamError`: all of them mean "the peer or the
path failed", and the caller's only decision is to drop the connection.
"""

from __future__ import annotations

import asyncio

from rms.net.framing import HEADER_SIZE, MAX_FRAME, encode_frame

__all__ = ["StreamError", "read_frame", "write_frame"]


class StreamError(Exception):
    """The connection failed or the peer broke the framing (a remote error)."""


async def read_frame(
    reader: asyncio.StreamReader, cap: int = MAX_FRAME, within_s: float | None = None
) -> bytes | None:
    """The next frame; None if the stream ends cleanly between frames."""
    try:
        async with asyncio.timeout(within_s):
            return await _read(reader, cap)
    except TimeoutError:
        raise StreamError(f"no whole frame within {within_s} s") from None
    except OSError as exc:
        raise StreamError(f"connection failed: {exc.strerror or exc}") from None


async def _read(reader: asyncio.StreamReader, cap: int) -> bytes | None:
    try:
        header = await reader.readexactly(HEADER_SIZE)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise StreamError("the stream ended inside a frame header") from None
    length = int.from_bytes(header, "big")
    if length > cap:
        raise StreamError(f"frame of {length} bytes announced, the cap is {cap}")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise StreamError("the stream ended inside a frame") from None


async def write_frame(
    writer: asyncio.StreamWriter, data: bytes, cap: int = MAX_FRAME, within_s: float | None = None
) -> None:
    """Send `data` as one frame and wait until the transport has taken it."""
    frame = encode_frame(data, cap)  # over the cap is our bug: ValueError, not StreamError
    try:
        async with asyncio.timeout(within_s):
            writer.write(frame)
            await writer.drain()
    except TimeoutError:
        raise StreamError(f"the peer did not take a frame within {within_s} s") from None
    except OSError as exc:
        raise StreamError(f"connection failed: {exc.strerror or exc}") from None
