"""``python -m tinker_recovery``: the ``tinker-recovery`` command line (see ``tinker_recovery.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
