"""`python -m peering` runs the command-line interface."""

from peering.cli import main

raise SystemExit(main())
