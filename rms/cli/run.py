"""`rms run` (being written)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add `rms run` to the command line."""
    parser: argparse.ArgumentParser = sub.add_parser("run")
    parser.set_defaults(handler=lambda args: 2)
