"""``python -m raymeta``: the same as the ``raymeta`` command (used by job entrypoints)."""

import sys

from raymeta.cli import main

if __name__ == "__main__":  # importing the module (the structure test does) runs nothing
    sys.exit(main())
