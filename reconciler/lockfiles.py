"""Observing application locks on this host (an adapter: it reads files, decides nothing).

An application that mounts ``FLEETGATE_LOCK_DIR`` creates ``updates.lock`` in it to
defer updates of its stack; the folders live under ``{state}/locks/{device}/<stack>/``.
The agent keeps each lock's deferral clock in ``{state}/devices/{device}/locks.json``.
``plan`` and ``apply`` read both exactly as the agent does (never writing the clocks),
then :func:`reconciler.decide.gates.lock_gate` decides.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from reconciler.decide.gates import LOCK_FILE
from reconciler.model import parse_rfc3339


def lock_root(state_dir: Path, device: str) -> Path:
    """``{state}/locks/{device}``: one folder per stack, ``updates.lock`` inside."""
    return state_dir / "locks" / device


def clocks_path(state_dir: Path, device: str) -> Path:
    """Where the agent keeps the deferral clocks of ``device``."""
    return state_dir / "devices" / device / "locks.json"


def locked_stacks(root: Path) -> frozenset[str]:
    """Folders under ``root`` holding ``updates.lock`` now (none when unreadable)."""
    try:
        return frozenset(entry.name for entry in root.iterdir() if (entry / LOCK_FILE).exists())
    except OSError:
        return frozenset()


def load_clocks(path: Path) -> dict[str, datetime]:
    """The stored deferral clocks; a missing or damaged file is no clocks."""
    try:
        data = json.loads(path.read_bytes())
        return {str(k): parse_rfc3339(str(v)) for k, v in dict(data).items()}
    except (OSError, ValueError, TypeError):
        return {}
