"""Length-prefixed frames: the sans-IO reader and the asyncio helpers on fed streams."""

from __future__ import annotations

import asyncio
import random

import pytest

from rms.net.framing import HEADER_SIZE, MAX_FRAME, FrameReader, encode_frame
from rms.net.streams import StreamError, read_frame


def test_round_trip_in_one_chunk_and_byte_by_byte() -> None:
    frames = [b"", b"a", bytes(range(256)), b"x" * 1000]
    stream = b"".join(encode_frame(f) for f in frames)
    assert FrameReader().feed(stream) == frames
    reader = FrameReader()
    out: list[bytes] = []
    for i in range(len(stream)):
        out += reader.feed(stream[i : i + 1])
    assert out == frames and reader.frames_read == 4 and reader.at_boundary


def test_random_splits_give_the_same_frames() -> None:
    rng = random.Random(11)
    frames = [rng.randbytes(rng.randrange(0, 3000)) for _ in range(50)]
    stream = b"".join(encode_frame(f) for f in frames)
    reader, out, pos = FrameReader(), [], 0
    while pos < len(stream):
        step = rng.randrange(1, 5000)
        out += reader.feed(stream[pos : pos + step])
        pos += step
    assert out == frames


def test_a_frame_at_the_cap_passes_and_one_over_breaks_the_reader() -> None:
    assert FrameReader(cap=10).feed(encode_frame(b"x" * 10, cap=10)) == [b"x" * 10]
    reader = FrameReader(cap=10)
    assert reader.feed((11).to_bytes(HEADER_SIZE, "big")) == []
    assert reader.error is not None and "cap is 10" in reader.error
    assert reader.buffered == 0 and not reader.at_boundary
    assert reader.feed(encode_frame(b"ok")) == []  # the stream lost its framing for good


def test_a_huge_announced_length_costs_nothing() -> None:
    reader = FrameReader()
    assert reader.feed(b"\xff\xff\xff\xff" + b"x" * 100) == []
    assert reader.error is not None and reader.buffered == 0


def test_frames_before_a_bad_header_are_delivered() -> None:
    reader = FrameReader(cap=100)
    assert reader.feed(encode_frame(b"one") + (101).to_bytes(4, "big")) == [b"one"]
    assert reader.error is not None


def test_partial_frames_wait() -> None:
    reader = FrameReader()
    assert reader.feed(encode_frame(b"hello")[:-1]) == []
    assert reader.buffered == HEADER_SIZE + 4 and not reader.at_boundary
    assert reader.feed(b"o") == [b"hello"]


def test_encoding_over_the_cap_is_our_bug() -> None:
    with pytest.raises(ValueError, match="exceeds the cap"):
        encode_frame(b"x" * (MAX_FRAME + 1))
    with pytest.raises(ValueError):
        FrameReader(cap=0)


def fed(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


async def test_read_frame_reads_frames_then_none_at_a_clean_end() -> None:
    reader = fed(encode_frame(b"one") + encode_frame(b""))
    assert await read_frame(reader) == b"one"
    assert await read_frame(reader) == b""
    assert await read_frame(reader) is None


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x00\x00", "inside a frame header"),
        (encode_frame(b"abcdef")[:-2], "inside a frame"),
        ((MAX_FRAME + 1).to_bytes(4, "big"), "cap"),
    ],
)
async def test_read_frame_raises_stream_error_on_bad_streams(data: bytes, words: str) -> None:
    with pytest.raises(StreamError, match=words):
        await read_frame(fed(data))


async def test_read_frame_gives_up_after_its_time_limit() -> None:
    with pytest.raises(StreamError, match=r"within 0\.01 s"):
        await read_frame(fed(b"\x00\x00\x00\x05ab", eof=False), within_s=0.01)
