"""Hostile corpus, fleet view: the repository's device files as the fleet view reads them.

``fleet status`` reads only ``devices/*.yaml`` → labels (issue 10, scale). Each case fails
on the code before: a device with a broken manifest was silently left out of the fleet
(one count of "validation findings"), where it must stay listed, with the file, line and
reason of its problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.hostile import Case, run_case

REPO = {
    "devices/d1.yaml": "labels: {site: plant-a}\nstacks: [s]\n",
    "stacks/s/compose.yaml": "services:\n  x:\n    image: x\n",
    "reports/d1.json": json.dumps({"device": "d1", "outcome": "succeeded"}),
}
ARGS = ("fleet", "status", "--from", "{repo}/reports", "--repo", "{repo}")
LISTED = "listed without labels (see fleetgate validate)"

CASES = [
    Case(
        name="device-file-broken-yaml",
        files=REPO | {"devices/d2.yaml": "labels: {site: plant-b\nstacks: [s]\n"},
        args=ARGS,
        exit_code=0,
        expect=("devices/d2.yaml:2: YAML", LISTED, "d2"),
    ),
    Case(
        name="device-file-control-characters",
        files=REPO | {"devices/d2.yaml": 'labels: {site: "\x1b[2Jevil"}\n'},
        args=ARGS,
        exit_code=0,
        expect=("devices/d2.yaml:1:", LISTED),
    ),
    Case(
        name="device-file-not-a-mapping",
        files=REPO | {"devices/d2.yaml": "- just\n- a list\n"},
        args=ARGS,
        exit_code=0,
        expect=("devices/d2.yaml:1: a device manifest is a mapping", LISTED),
    ),
    Case(
        name="device-labels-not-a-mapping",
        files=REPO | {"devices/d2.yaml": "labels: [site]\n"},
        args=ARGS,
        exit_code=0,
        expect=("devices/d2.yaml: labels is not a mapping", LISTED),
    ),
    Case(
        name="device-file-alias-bomb",
        files=REPO
        | {
            "devices/d2.yaml": "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                for p, c in zip("abcdefgh", "bcdefghi", strict=True)
            )
            + "labels: {site: x}\n"
        },
        args=ARGS,
        exit_code=0,
        expect=("devices/d2.yaml", LISTED),
    ),
]


class TestFleetRepositoryCorpus:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """A broken device file keeps its device in the fleet view, with one clear line."""
        run_case(case, tmp_path)
