"""``python -m fxmaps``: the command line."""

from fxmaps.cli import main

raise SystemExit(main())
