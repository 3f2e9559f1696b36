"""Hostile corpus, decide cases: `plan` reports the gates `apply` honours, from any state dir.

The state directory (lock files, the agent's deferral clocks) is input too: an
application can create any folder under its lock dir, and a damaged ``locks.json``
must not crash ``plan`` or make it lie.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.hostile import Case, run_case

from reconciler.model import WEEKDAYS

STACK = {
    "devices/d1.yaml": "stacks: [s]\n",
    "stacks/s/compose.yaml": "services:\n  x:\n    image: fleetgate-test/never:1\n",
}
PLAN = ("plan", "--device", "d1", "--repo", "{repo}", "--state-dir", "{repo}/state")
LOCK = "state/locks/d1/s/updates.lock"
_DAY = WEEKDAYS[(datetime.now(UTC).date() + timedelta(days=3)).weekday()]

CASES = [
    Case(
        # Fails on the old code: plan ignored locks (no reason printed); without the
        # clamp in lock_gate the far-future clock overflowed into a traceback.
        name="lock-clock-from-the-far-future",
        files=STACK | {LOCK: "", "state/devices/d1/locks.json": '{"s": "9999-12-31T23:59:59Z"}'},
        args=PLAN,
        exit_code=0,
        expect=(
            "waits: held by application lock: s (updates.lock), until ",
            "pulled ahead for s/x",
        ),
    ),
    Case(
        # Fails on the old code: plan listed create/start although apply would wait.
        name="closed-window-plan-shows-the-wait",
        files=STACK
        | {
            "devices/d1.yaml": (
                "stacks: [s]\nupdateWindows:\n"
                f"  - {{days: [{_DAY}], start: '03:00', end: '03:01', timezone: UTC}}\n"
            )
        },
        args=PLAN,
        exit_code=0,
        expect=("waits: outside the update windows (next opens ", f"{_DAY.capitalize()} 03:00 UTC"),
    ),
    Case(
        # Fails on the old code (no lock reason at all). Also guards that a lock folder
        # named with terminal escapes is never echoed: only declared stacks are reported.
        name="lock-folder-named-with-escapes",
        files=STACK | {LOCK: "", "state/locks/d1/\x1b[2J\u202eevil/updates.lock": ""},
        args=PLAN,
        exit_code=0,
        expect=("waits: held by application lock: s (updates.lock), until ",),
    ),
]


class TestDecideCorpus:
    @pytest.mark.docker
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """plan names the gate apply would honour, without traceback or raw escapes."""
        run_case(case, tmp_path)
