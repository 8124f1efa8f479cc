"""`python -m percept`."""
from percept.cli import main

raise SystemExit(main())
