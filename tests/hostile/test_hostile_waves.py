"""Hostile corpus, rollout waves: what a pusher could write into rollout.waves and waves/*.yaml.

Each case fails on the code before waves existed (``rollout`` was an unknown key, pin
files were never read) and passes with :mod:`reconciler.manifests.waves`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.hostile import Case, run_case

WAVES = (
    "rollout:\n  waves:\n    - name: lab\n      selector: {ring: lab}\n"
    "    - name: production\n      selector: {ring: prod}\n      soak: 1h\n"
)
LAB = {"fleet.yaml": WAVES, "devices/l1.yaml": "labels: {ring: lab}\n"}
SHA = "0123456789abcdef0123456789abcdef01234567"

CASES = [
    Case(
        name="device-in-no-wave",
        files=LAB | {"devices/x.yaml": "labels: {ring: qa}\n"},
        expect=("devices/x.yaml:1:", "device x is in no rollout wave"),
    ),
    Case(
        name="soak-not-a-duration",
        files=LAB | {"fleet.yaml": WAVES.replace("soak: 1h", "soak: forever")},
        expect=("fleet.yaml:7:", "soak: 'forever' is not a duration"),
    ),
    Case(
        name="pin-short-sha",
        files=LAB | {"waves/production.yaml": "revision: deadbeef\n"},
        expect=("waves/production.yaml:1:", "is not a full 40-hex commit SHA"),
    ),
    Case(
        name="pin-branch-name-not-sha",
        files=LAB | {"waves/production.yaml": "revision: main\n"},
        expect=("waves/production.yaml:1:", "is not a full 40-hex commit SHA"),
    ),
    Case(
        name="pin-for-undeclared-wave",
        files=LAB | {"waves/canary.yaml": f"revision: {SHA}\n"},
        expect=("waves/canary.yaml:1:", "no wave 'canary'"),
    ),
    Case(
        name="pin-for-first-wave",
        files=LAB | {"waves/lab.yaml": f"revision: {SHA}\n"},
        expect=("waves/lab.yaml:1:", "is the first wave"),
    ),
    Case(
        name="pin-without-rollout",
        files={"devices/l1.yaml": "{}\n", "waves/production.yaml": f"revision: {SHA}\n"},
        expect=("waves/production.yaml:1:", "without rollout.waves"),
    ),
    Case(
        name="wave-declared-twice",
        files=LAB | {"fleet.yaml": WAVES + "    - name: lab\n      selector: {}\n"},
        expect=("fleet.yaml:8:", "wave 'lab' is declared twice"),
    ),
    Case(
        name="wave-name-with-escape",
        files=LAB | {"fleet.yaml": WAVES.replace("name: lab", 'name: "l\\e[31mab"')},
        expect=("fleet.yaml:3:", "contains a control character U+001B"),
    ),
    Case(
        name="pin-extra-key",
        files=LAB | {"waves/production.yaml": f"revision: {SHA}\nforce: true\n"},
        expect=("waves/production.yaml:2:", "unknown key 'force'"),
    ),
]


class TestWavesCorpus:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """A hostile rollout is refused with exit 1, naming file, line and reason, quickly."""
        run_case(case, tmp_path)
