"""Starting a long-lived program detached: its own session, output appended to a log.

posix_spawn rather than subprocess.Popen: the program (a lab node's daemon, tgtd, zfs-fuse)
must outlive the call, and a Popen object or asyncio transport left running would warn when
collected. The signals Python ignores or handles get their defaults back in the child.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

_RESET = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def spawn_detached(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> int:
    """Start argv (searched on PATH) and return its pid; OSError when it cannot start."""
    log.parent.mkdir(parents=True, exist_ok=True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    environment = dict(os.environ if env is None else env)
    return os.posix_spawnp(
        argv[0], list(argv), environment, file_actions=actions, setsid=True, setsigdef=_RESET
    )
