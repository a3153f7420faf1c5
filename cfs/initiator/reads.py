"""Bounded reads of a bridge's files, so that a hung bridge is found and never starves us.

A read of a FUSE file whose server stopped answering (a bridge stuck, or stopped) blocks
its thread until the server dies; asyncio cannot cancel it. So each kind of read of each
bridge has at most one thread outstanding (a new call while one is pending waits on that
same read), they run in a pool of their own (the loop's default pool stays free), and a
bridge whose reads have been slow without a break for `hung_s` counts as hung: slow is
not dead (a read may queue behind the pool's own I/O), but a minute of silence is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

HUNG_S = 60.0
T = TypeVar("T")
_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="cfs-bridge-read")


class Reads:
    """One outstanding read per key; how long each key has been slow."""

    def __init__(self, hung_s: float = HUNG_S) -> None:
        self.hung_s = hung_s
        self._pending: dict[str, asyncio.Future[object]] = {}
        self._slow_since: dict[str, float] = {}

    async def read(self, key: str, fn: Callable[[], T], timeout_s: float) -> T | None:
        """fn() in a thread; None while it is slow (it goes on, and is waited for again)."""
        loop = asyncio.get_running_loop()
        fut = self._pending.get(key)
        if fut is None:
            fut = loop.run_in_executor(_POOL, fn)
            self._pending[key] = fut
        try:
            result = await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            self._slow_since.setdefault(key, loop.time())
            return None
        except BaseException:
            self._done(key, fut)
            raise
        self._done(key, fut)
        return result  # type: ignore[return-value]  # fut is fn's own future

    def _done(self, key: str, fut: asyncio.Future[object]) -> None:
        if fut.done() and self._pending.get(key) is fut:
            del self._pending[key]
            self._slow_since.pop(key, None)

    def hung(self, key: str) -> bool:
        """Whether reads of key have been slow without a break for hung_s."""
        since = self._slow_since.get(key)
        return since is not None and asyncio.get_running_loop().time() - since >= self.hung_s

    def forget(self, prefix: str) -> None:
        """Drop what is known of keys under prefix (the bridge is gone)."""
        for key in [k for k in self._pending if k.startswith(prefix)]:
            del self._pending[key]
        for key in [k for k in self._slow_since if k.startswith(prefix)]:
            del self._slow_since[key]
