"""`python -m reconciler` runs the `fleetgate` command line."""

import sys

from reconciler.cli import run_command

sys.exit(run_command())
