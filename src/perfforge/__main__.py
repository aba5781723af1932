"""``python -m perfforge``: the same as the ``perfforge`` command."""

import sys

from perfforge.cli.main import main

sys.exit(main())
