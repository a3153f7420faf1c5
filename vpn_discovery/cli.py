"""The `vpn-discovery` command."""

from __future__ import annotations

from collections.abc import Sequence

from rms import servicecli

DESCRIPTION = "True Cloud management VPN discovery feed (RSS of signed VPN records)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vpn-discovery` console script."""
    return servicecli.run(servicecli.build_parser("vpn-discovery", DESCRIPTION), argv)
