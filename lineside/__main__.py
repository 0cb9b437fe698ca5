"""`python -m lineside` runs the CLI."""

from lineside.cli import main

raise SystemExit(main())
