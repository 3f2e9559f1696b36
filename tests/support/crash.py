"""The crash points tests kill fleetgate at (``FLEETGATE_CRASH_AT``), by the path reaching them.

Kept here once for the CLI and the agent crash tests; ``tests/test_crashpoints.py``
checks that together they name every ``crashpoint(...)`` call in the code, so a new
crash point without a test fails the suite.
"""

from __future__ import annotations

UPDATE_POINTS = (
    "after-pull",
    "after-config",
    "after-create",
    "after-stop",
    "after-remove",
    "after-rename",
    "before-start",
    "after-start",
    "reconcile.after-attempt",
    "reconcile.after-apply",
    "reconcile.before-good-recorded",
)
"""Every crash point an update passes through (apply's and the pass's own)."""

ROLLBACK_POINTS = ("reconcile.after-failure-recorded",)
"""Reached only by an update that fails its health gate (the end state is a rollback)."""
