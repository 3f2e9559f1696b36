"""Hostile corpus, the Stage vocabulary (issue 9): a report's ``stage`` is untrusted input.

Fails on the code before ``Stage`` became an enum: any string was taken as the stage of
the report (shown raw); now it is not a stage the pipeline has, so the report is
ignored with one escaped schema line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.hostile import Case, run_case

REPO = {
    "devices/d1.yaml": "stacks: [s]\n",
    "stacks/s/compose.yaml": "services:\n  x:\n    image: x\n",
}
FROM = ("fleet", "status", "--from", "{repo}/reports", "--repo", "{repo}")


def _status(stage: object) -> str:
    return json.dumps({"device": "d1", "outcome": "failed", "reason": "r", "stage": stage})


CASES = [
    Case(
        name="report-unknown-stage",
        files=REPO | {"reports/d1.json": _status("\x1b[2Jlaunch")},
        args=FROM,
        exit_code=0,
        expect=(
            "reports/d1.json: status does not match its schema: unknown stage",
            "\\x1b[2Jlaunch",
        ),
    ),
    Case(
        name="report-stage-a-list",
        files=REPO | {"reports/d1.json": _status(["plan"])},
        args=FROM,
        exit_code=0,
        expect=("reports/d1.json: status does not match its schema: unknown stage",),
    ),
]


class TestStageCorpus:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """A report naming no stage of the pipeline is ignored with one escaped schema line."""
        run_case(case, tmp_path)
