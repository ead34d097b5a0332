"""`python -m ikd` works like the `ikd` console script."""

from ikd.cli import main

raise SystemExit(main())
