"""Streams of signed envelopes over TCP: 4-byte length-prefixed frames with a size cap.

`rms.net.framing` is the sans-IO part (`FrameReader`, `encode_frame`) that protocol cores
use; `rms.net.streams` holds the asyncio helpers (`read_frame`, `write_frame`) for adapters.
This package imports neither, so a core importing the framing never pulls in asyncio.
Admission (port 7946) and member-to-member RPC (port 7947) both speak it (docs/admission.md,
"Framing").
"""
