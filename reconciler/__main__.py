"""`python -m reconciler` runs the `fleetgate` command line."""

import sys

from reconciler.cli import main

sys.exit(main())
