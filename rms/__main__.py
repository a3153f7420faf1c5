"""`python -m rms` is the `rms` command."""

from rms.cli.main import main

raise SystemExit(main())
