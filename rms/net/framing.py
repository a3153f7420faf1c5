"""Length-prefixed frames over a byte stream, sans-IO.

A frame is a 4-byte big-endian length followed by that many bytes, one wire envelope
(docs/wire.md). TCP gives a stream, not messages, so the length says where one envelope
ends; the cap is checked on the header, before a byte of the body is buffered, so a peer
announcing 4 GiB costs us 4 bytes. A reader that saw an oversized header stays broken: the
stream has lost its framing, and the adapter drops the connection.
"""

from __future__ import annotations

__all__ = ["HEADER_SIZE", "MAX_FRAME", "FrameReader", "encode_frame"]

HEADER_SIZE = 4
MAX_FRAME = 64 * 1024  # one envelope at the decoder's default max_datagram


def encode_frame(data: bytes, cap: int = MAX_FRAME) -> bytes:
    """`data` with its length prefix; a frame over `cap` is our bug, so it raises."""
    if len(data) > cap:
        raise ValueError(f"a frame of {len(data)} bytes exceeds the cap of {cap}")
    return len(data).to_bytes(HEADER_SIZE, "big") + data


class FrameReader:
    """Turns stream bytes into frames; a frame over the cap puts it in an error state."""

    __slots__ = ("_buffer", "_cap", "error", "frames_read")

    def __init__(self, cap: int = MAX_FRAME) -> None:
        if cap < 1:
            raise ValueError("a frame cap must be positive")
        self._cap = cap
        self._buffer = bytearray()
        self.error: str | None = None
        self.frames_read = 0

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buffer)

    @property
    def at_boundary(self) -> bool:
        """Whether the stream could end here without cutting a frame."""
        return not self._buffer and self.error is None

    def feed(self, data: bytes) -> list[bytes]:
        """The whole frames completed by `data`; none once the reader is in error."""
        if self.error is not None:
            return []
        self._buffer += data
        frames: list[bytes] = []
        while (frame := self._next()) is not None:
            frames.append(frame)
        self.frames_read += len(frames)
        return frames

    def _next(self) -> bytes | None:
        if len(self._buffer) < HEADER_SIZE:
            return None
        length = int.from_bytes(self._buffer[:HEADER_SIZE], "big")
        if length > self._cap:
            self.error = f"frame of {length} bytes announced, the cap is {self._cap}"
            self._buffer.clear()
            return None
        end = HEADER_SIZE + length
        if len(self._buffer) < end:
            return None
        frame = bytes(self._buffer[HEADER_SIZE:end])
        del self._buffer[:end]
        return frame
