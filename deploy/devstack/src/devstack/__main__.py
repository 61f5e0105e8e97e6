"""`python -m devstack ...` runs the command line."""

from devstack.cli import main

raise SystemExit(main())
