"""The `volume-provider` command."""

from __future__ import annotations

from collections.abc import Sequence

from rms import servicecli

DESCRIPTION = (
    "True Cloud Volume Provider: exports contributed storage as iSCSI volumes over nested VPNs"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `volume-provider` console script."""
    return servicecli.run(servicecli.build_parser("volume-provider", DESCRIPTION), argv)
