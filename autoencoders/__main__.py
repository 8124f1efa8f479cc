from autoencoders.cli import main

raise SystemExit(main())
