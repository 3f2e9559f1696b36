"""Hostile corpus, fleet view: reports are untrusted input (issue 10).

Every case fails on the code before issue 10 (there was no ``fleet`` command: exit 2);
they guard the fleet view's handling of what devices and users hand it.
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


def _status(**extra: object) -> str:
    return json.dumps({"device": "d1", "outcome": "succeeded", "reason": "ok", **extra})


CASES = [
    Case(
        name="report-control-characters",
        files=REPO | {"reports/d1.json": _status(reason="\x1b[2J\u202eevil\r\x07")},
        args=FROM,
        exit_code=0,
        expect=("d1", "\\x1b[2J\\u202eevil"),
    ),
    Case(
        name="report-invalid-json",
        files=REPO | {"reports/d1.json": '{\n"device": "d1",\n'},
        args=FROM,
        exit_code=0,
        expect=("reports/d1.json:3: not valid JSON", "never reported"),
    ),
    Case(
        name="report-for-another-device",
        files=REPO | {"reports/d1.json": _status(device="d2")},
        args=FROM,
        exit_code=0,
        expect=("reports/d1.json: status of device 'd2' under 'd1'; ignored",),
    ),
    Case(
        name="report-not-an-object",
        files=REPO | {"reports/d1.json": "[1, 2]"},
        args=FROM,
        exit_code=0,
        expect=("reports/d1.json: not a status document",),
    ),
    Case(
        name="report-wrong-shape",
        files=REPO | {"reports/d1.json": _status(services="all")},
        args=FROM,
        exit_code=0,
        expect=("reports/d1.json: status does not match its schema",),
    ),
    Case(
        name="report-bad-time",
        files=REPO | {"reports/d1.json": _status(heartbeat_at="yesterday")},
        args=FROM,
        exit_code=0,
        expect=("reports/d1.json:", "ignored"),
    ),
    Case(
        name="report-deeply-nested",
        files=REPO | {"reports/d1.json": "[" * 200_000},
        args=FROM,
        exit_code=0,
        expect=("reports/d1.json:", "ignored"),
    ),
    Case(
        name="report-huge",
        files=REPO | {"reports/d1.json": _status(reason="x" * (2 << 20))},
        args=FROM,
        exit_code=0,
        expect=("reports/d1.json: larger than 1048576 bytes",),
    ),
    Case(
        name="report-file-not-a-device-id",
        files=REPO | {"reports/../Evil Name.json": _status()},
        args=("fleet", "status", "--from", "{repo}", "--repo", "{repo}"),
        exit_code=0,
        expect=("Evil Name.json: 'Evil Name' is not a device id",),
    ),
    Case(
        name="broker-url-not-mqtt",
        files=REPO,
        args=("fleet", "status", "--broker", "http://b:1883", "--repo", "{repo}"),
        exit_code=2,
        expect=("--broker: 'http://b:1883' is not mqtt://HOST:PORT",),
    ),
    Case(
        name="broker-url-with-password",
        files=REPO,
        args=("fleet", "status", "--broker", "mqtt://u:pw@b:1883", "--repo", "{repo}"),
        exit_code=2,
        expect=("--broker: put no credentials in the broker URL",),
    ),
    Case(
        name="broker-unreachable",
        files=REPO,
        args=("fleet", "status", "--broker", "mqtt://127.0.0.1:9", "--repo", "{repo}"),
        exit_code=1,
        expect=("cannot reach the broker mqtt://127.0.0.1:9",),
    ),
    Case(
        name="from-not-a-folder",
        files=REPO,
        args=("fleet", "status", "--from", "{repo}/nope", "--repo", "{repo}"),
        exit_code=2,
        expect=("/nope: not a folder",),
    ),
    Case(
        name="selector-without-equals",
        files=REPO | {"reports/d1.json": _status()},
        args=(*FROM, "--selector", "site"),
        exit_code=2,
        expect=("--selector 'site': write LABEL=VALUE",),
    ),
    Case(
        name="password-file-missing",
        files=REPO,
        args=(
            "fleet",
            "status",
            "--broker",
            "mqtt://127.0.0.1:9",
            "--username",
            "viewer",
            "--password-file",
            "{repo}/nope",
            "--repo",
            "{repo}",
        ),
        exit_code=2,
        expect=("--password-file: cannot read the password file",),
    ),
]


class TestFleetCorpus:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """A hostile report or flag gets one clear line, no traceback, no raw control char."""
        run_case(case, tmp_path)
