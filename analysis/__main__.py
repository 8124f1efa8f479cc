"""`python -m analysis COMMAND ...`."""
from analysis.cli import main

raise SystemExit(main())
