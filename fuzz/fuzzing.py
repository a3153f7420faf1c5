"""What the fuzz targets share: a valid input with a few bytes changed where the input says."""

from __future__ import annotations

import atheris


def mutated(fdp: atheris.FuzzedDataProvider, data: bytes) -> bytes:
    """`data` with one to four bytes overwritten, inserted or deleted."""
    out = bytearray(data)
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        position = fdp.ConsumeIntInRange(0, len(out))
        action = fdp.ConsumeIntInRange(0, 2)
        if action == 0 and position < len(out):
            out[position] = fdp.ConsumeIntInRange(0, 255)
        elif action == 1:
            out.insert(position, fdp.ConsumeIntInRange(0, 255))
        elif position < len(out):
            del out[position]
    return bytes(out)
