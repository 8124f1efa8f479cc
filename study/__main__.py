"""`python -m study COMMAND ...` runs the same commands as `percept design|run|simulate`."""
from study.cli import main

raise SystemExit(main())
