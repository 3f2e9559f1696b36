"""Running ``fleetgate`` as a real process against a ``FleetRepo``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.passes import FleetRepo


def fleetgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m reconciler ARGS`` and capture its output (logs go to stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def target(fleet: FleetRepo, state: Path) -> list[str]:
    return ["--device", fleet.device, "--repo", str(fleet.path), "--state-dir", str(state)]
