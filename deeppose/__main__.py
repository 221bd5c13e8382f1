"""`python -m deeppose <stage> ...`: see `deeppose.cli`."""

from deeppose.cli import main

raise SystemExit(main())
