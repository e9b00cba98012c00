"""`python -m server …` is the same as the `grantkeeper` console script."""

from server.cli import main

raise SystemExit(main())
