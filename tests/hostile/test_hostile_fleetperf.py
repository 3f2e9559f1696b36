"""Hostile corpus, fleet view's cheap report check (issue 10, point 6).

``fleet status`` now checks a report's shape without building the full status. These
cases pass on the code before that change too: they guard on purpose that the cheaper
check still rejects what the full parser rejected, with one escaped line and the
device shown as never reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.hostile import Case, run_case

REPO = {
    "devices/d1.yaml": "labels: {site: plant-a}\nstacks: [s]\n",
    "stacks/s/compose.yaml": "services:\n  x:\n    image: x\n",
}
FROM = ("fleet", "status", "--from", "{repo}/reports", "--repo", "{repo}")
SERVICE = {
    "stack": "s",
    "service": "x",
    "container": "s_x",
    "image": "x",
    "image_digest": "",
    "state": "running",
    "health": None,
    "restart_count": 0,
    "config_hash": "",
}


def _status(**extra: object) -> str:
    return json.dumps({"device": "d1", "outcome": "succeeded", "reason": "ok", **extra})


CASES = [
    Case(
        name="report-service-extra-field",
        files=REPO | {"reports/d1.json": _status(services=[SERVICE | {"\x1b[2Jx": 1}])},
        args=FROM,
        exit_code=0,
        expect=("reports/d1.json: status does not match its schema", "never reported"),
    ),
    Case(
        name="report-pending-update-a-list",
        files=REPO | {"reports/d1.json": _status(pending_update=["c" * 40])},
        args=FROM,
        exit_code=0,
        expect=("reports/d1.json: status does not match its schema", "never reported"),
    ),
    Case(
        name="report-failed-revision-bad-time",
        files=REPO
        | {
            "reports/d1.json": _status(failed_revisions=[{"revision": "b", "reason": "r", "at": 5}])
        },
        args=FROM,
        exit_code=0,
        expect=("reports/d1.json: status does not match its schema", "never reported"),
    ),
]


class TestFleetPerfCorpus:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """A report the full parser rejects is still rejected in one clear, escaped line."""
        run_case(case, tmp_path)
