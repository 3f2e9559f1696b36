"""Hostile corpus, seed cases: the holes `main` already closed stay closed."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.hostile import Case, run_case

DEVICE = {"devices/d1.yaml": "stacks: [s]\n"}

CASES = [
    Case(
        name="bind-docker-socket",
        files=DEVICE
        | {
            "stacks/s/compose.yaml": (
                "services:\n  x:\n    image: x\n    volumes:\n"
                "      - /var/run/docker.sock:/var/run/docker.sock\n"
            )
        },
        expect=("stacks/s/compose.yaml:4:", "docker.sock"),
    ),
    Case(
        name="privileged-without-policy",
        files=DEVICE
        | {"stacks/s/compose.yaml": "services:\n  x:\n    image: x\n    privileged: true\n"},
        expect=("stacks/s/compose.yaml:4:", "privileged"),
    ),
]


class TestSeedCorpus:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """A hostile fleet is refused with exit 1, naming file, line and reason, quickly."""
        run_case(case, tmp_path)
