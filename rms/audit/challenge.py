"""Read challenges: a client checks that a provider still holds what the client wrote.

The client keeps the SHA-256 of each block it wrote to a provider's volume (latest write
wins; a bounded number of blocks, the oldest forgotten first). Each audit round it picks blocks
at random, reads them back and compares. A provider that dropped a fraction f of the writes
fails a challenge of k blocks with probability 1 - (1 - f)^k: with k = 16 and f = 10 % that is
81 % a round, so a few rounds of several independent clients catch it (docs/accounting.md).
Sans-IO: the caller reads the blocks and passes a seeded `random.Random`.
"""

from __future__ import annotations

import hashlib
import random
from collections import OrderedDict
from collections.abc import Mapping

DEFAULT_CAPACITY = 65536  # blocks remembered per volume (2 MiB of digests)


class BlockLog:
    """Digests of the blocks a client wrote to one volume."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("a block log remembers at least one block")
        self._capacity = capacity
        self._digests: OrderedDict[int, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._digests)

    def blocks(self) -> list[int]:
        """The remembered blocks, oldest write first."""
        return list(self._digests)

    def wrote(self, block: int, data: bytes) -> None:
        """Remember what was written at `block` (the newest write replaces older ones)."""
        self._digests.pop(block, None)
        self._digests[block] = hashlib.sha256(data).digest()
        while len(self._digests) > self._capacity:
            self._digests.popitem(last=False)

    def challenge(self, rng: random.Random, count: int) -> list[int]:
        """Up to `count` distinct remembered blocks, chosen at random, in ascending order."""
        blocks = list(self._digests)
        return sorted(rng.sample(blocks, min(count, len(blocks))))

    def judge(self, answers: Mapping[int, bytes | None]) -> tuple[int, int]:
        """(checked, failed) for the blocks read back; a block not read back has failed."""
        checked = failed = 0
        for block, data in answers.items():
            expected = self._digests.get(block)
            if expected is None:
                continue  # not a block we challenged: ignore rather than blame
            checked += 1
            if data is None or hashlib.sha256(data).digest() != expected:
                failed += 1
        return checked, failed
