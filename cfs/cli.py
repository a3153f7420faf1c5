"""The `cfs` command."""

from __future__ import annotations

from collections.abc import Sequence

from rms import servicecli

DESCRIPTION = "True Cloud Cloud File System: a ZFS RAIDZ3 pool over 8 remote volumes"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cfs` console script."""
    return servicecli.run(servicecli.build_parser("cfs", DESCRIPTION), argv)
