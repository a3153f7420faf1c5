"""What a test needs of the host: root, programs on PATH, /dev/fuse; skip marks that say so."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def needs_root_and(*programs: str, packages: str, fuse: bool = False) -> list[pytest.MarkDecorator]:
    """Skip unless run as root with every program on PATH (and /dev/fuse, with `fuse`).

    `packages` names, for the skip reason, the Debian packages that bring the programs.
    """
    missing = any(shutil.which(p) is None for p in programs)
    return [
        pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
        pytest.mark.skipif(
            missing or (fuse and not Path("/dev/fuse").exists()), reason=f"needs {packages}"
        ),
    ]
