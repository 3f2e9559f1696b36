"""Named crash points: where tests kill the process to prove crash safety.

``crashpoint(name)`` does nothing unless the environment variable
``FLEETGATE_CRASH_AT`` equals ``name``; then the process kills itself with
``SIGKILL`` at exactly that point (no ``finally`` blocks, no atexit handlers, like
a power cut). This exists only for tests (``tests/test_crash*.py`` run
``python -m reconciler apply`` with it set and then check that a normal second
pass converges); it is never set in production.

Reading the environment here is deliberate and the only such read in the core:
a crash point must be reachable from any depth without threading a parameter
through every stage.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "FLEETGATE_CRASH_AT"


def crashpoint(name: str) -> None:
    """Kill this process with SIGKILL when ``FLEETGATE_CRASH_AT`` equals ``name``."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
