"""`python -m vpn_discovery` is the `vpn-discovery` command."""

from vpn_discovery.cli import main

raise SystemExit(main())
