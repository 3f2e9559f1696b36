"""Hostile corpus, fleet view's cheap report check (issue 10, point 6).

``fleet status`` now checks a report's shape without building the full status. These
cases pass on the code before that change too: they guard on purpose that the cheaper
check still rejects what the full parser rejected, with one escaped line and the
device shown as never reported.

The ``report-*-json`` cases (round 3) guard, on purpose too (the code before passed them),
that printing statuses as received (``--output json`` reuses a plain one-line ASCII
report's text) never lets a report's raw bytes through otherwise: non-ASCII, DEL and
a report spread over lines are re-encoded, escaped and on one line.
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
JSON = (*FROM, "--output", "json")
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


def _utf8(**extra: object) -> bytes:
    """A status with its non-ASCII characters as raw UTF-8, not ``\\u`` escapes."""
    document = {"device": "d1", "outcome": "succeeded", "reason": "ok", **extra}
    return json.dumps(document, ensure_ascii=False).encode()


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
    Case(
        name="report-bidi-override-json",
        files=REPO | {"reports/d1.json": _utf8(reason="ok \u202egnp.exe")},
        args=JSON,
        exit_code=0,
        expect=('"reason": "ok \\u202egnp.exe"',),
    ),
    Case(
        name="report-raw-del-json",
        files=REPO | {"reports/d1.json": _status(reason="ok").replace("ok", "o\x7fk")},
        args=JSON,
        exit_code=0,
        expect=('"status": {"device": "d1"',),
    ),
    Case(
        name="report-spread-over-lines-json",
        files=REPO | {"reports/d1.json": json.dumps(json.loads(_status()), indent="\t")},
        args=JSON,
        exit_code=0,
        expect=('"status": {"device": "d1", "outcome": "succeeded", "reason": "ok"}',),
    ),
]


class TestFleetPerfCorpus:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """A report the full parser rejects is still rejected in one clear, escaped line."""
        run_case(case, tmp_path)
