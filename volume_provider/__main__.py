"""`python -m volume_provider` is the `volume-provider` command."""

from volume_provider.cli import main

raise SystemExit(main())
