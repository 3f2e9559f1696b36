"""Crash points kill the process only when asked to, and like a power cut."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from support.crash import ROLLBACK_POINTS, UPDATE_POINTS

import reconciler

SCRIPT = (
    "from reconciler.crashpoints import crashpoint\n"
    "crashpoint('after-stop')\n"
    "print('survived', flush=True)\n"
)


def run(env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLEETGATE_CRASH_AT"}
    if env_value is not None:
        env["FLEETGATE_CRASH_AT"] = env_value
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


class TestCrashpoint:
    """``crashpoint(name)`` is a no-op unless FLEETGATE_CRASH_AT names it."""

    def test_unset_does_nothing(self) -> None:
        """Without the variable the process carries on."""
        result = run(None)
        assert result.returncode == 0 and result.stdout == "survived\n"

    def test_other_name_does_nothing(self) -> None:
        """A crash point with another name does not fire."""
        assert run("after-start").returncode == 0

    def test_matching_name_kills_with_sigkill(self) -> None:
        """The named point kills the process with SIGKILL before anything else runs."""
        result = run("after-stop")
        assert result.returncode == -signal.SIGKILL
        assert result.stdout == ""


class TestCoverage:
    """Every crash point in the code has a crash test."""

    def test_every_crashpoint_is_exercised(self) -> None:
        """A new crashpoint() call without a matching crash test fails here."""
        package = Path(reconciler.__file__).parent
        found = {
            m.group(1)
            for path in package.rglob("*.py")
            for m in re.finditer(r'crashpoint\("([^"]+)"\)', path.read_text(encoding="utf-8"))
        }
        assert found, "no crash points found"
        assert found == set(UPDATE_POINTS) | set(ROLLBACK_POINTS)
