"""`python -m cfs` is the `cfs` command."""

from cfs.cli import main

raise SystemExit(main())
