"""Planner tests as data: each ``tests/fixtures/plan/*.yaml`` is observed + desired in,
steps (as ``Step.describe()`` lines), blocked reasons and notes out.

Fixture format (compact; hashes are derived from the values, as render derives them):

    desired:            # stacks by name
      <stack>:
        services:       # in order; container name defaults to "<stack>-<service>"
          <service>: {image, environment, restart, pull_policy, healthcheck: bool,
                      depends_on: {<service>: <condition>}, networks: [name], ...}
        networks: [name]
        volumes: [name]
        data_dirs: [path]
    observed:
      images: [ref]
      networks: {name: stack}
      foreign: [container name]
      containers:       # hashes as if created from the given values
        - {id, stack, service, state, image, environment, name, exit_code, ...}
    steps: [describe lines]
    blocked: [reasons]  # optional, default []
    notes: [notes]      # optional, default: not checked
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fakes import DEVICE
from support.planfixtures import FIXTURES, fixture_runtime, fixture_state

from reconciler.plan.planner import plan


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
class TestPlanFixtures:
    def test_steps_blocked_and_notes_match(self, path: Path) -> None:
        """The plan for a fixture's observed and desired state is exactly its expected steps."""
        case = yaml.safe_load(path.read_text())
        observed = fixture_runtime(case.get("observed") or {}).observe(DEVICE)
        result = plan(fixture_state(case.get("desired")), observed)
        assert list(result.describe()) == case["steps"]
        assert list(result.blocked) == case.get("blocked", [])
        if "notes" in case:
            assert list(result.notes) == case["notes"]


class TestFixtureSet:
    def test_there_are_enough_scenarios(self) -> None:
        """The fixture directory holds at least the eight scenarios the planner promises."""
        assert len(FIXTURES) >= 8
