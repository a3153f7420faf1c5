"""`rms lab …` (being written)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add `rms lab` to the command line."""
    parser: argparse.ArgumentParser = sub.add_parser("lab", help="the local lab")
    parser.set_defaults(handler=lambda args: 2)
