"""``python -m raymeta``: the same as the ``raymeta`` command (used by job entrypoints)."""

import sys

from raymeta.cli import main

sys.exit(main())
