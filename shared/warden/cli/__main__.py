"""``python -m warden.cli``: the same command as ``warden``."""

from warden.cli.main import main

raise SystemExit(main())
