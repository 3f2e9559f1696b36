"""`plan` shows exactly what `apply` runs: the planner fixtures through both, under each gate.

The plan side makes the same calls as ``fleetgate plan`` (``decide`` → ``observe_host``
→ ``steps_toward``); the apply side runs a real pass (:func:`reconcile_desired`) against
the fake engine of tests/fakes.py and records the steps the executor ran.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes import DEVICE, FakeRuntime, desired
from support.passes import FakeClock
from support.planfixtures import FIXTURES, fixture_runtime, fixture_state

from reconciler.decide.passplan import Gates, decide
from reconciler.manifests.tree import RepoTree
from reconciler.model import DesiredState, UpdateWindow
from reconciler.reconcile.converge import observe_host, steps_toward
from reconciler.reconcile.run import reconcile_desired
from reconciler.record import DeviceRecord, RevisionMark
from reconciler.store import StateStore

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday, outside SATURDAY
SATURDAY = (UpdateWindow(("sat",), "01:00", "02:00", "UTC"),)
SCENARIOS = ("open", "window-closed", "first-stack-locked")


def _case(path: Path, tmp: Path) -> tuple[DesiredState, dict[str, Any]]:
    """The fixture's desired state (data directories moved under ``tmp``) and observed part."""
    case = yaml.safe_load(path.read_text())
    state = fixture_state(case.get("desired"))
    stacks = tuple(
        replace(st, data_dirs=tuple(f"{tmp}{d}" for d in st.data_dirs)) for st in state.stacks
    )
    return replace(state, stacks=stacks), case.get("observed") or {}


def _gated(state: DesiredState, scenario: str) -> tuple[DesiredState, DeviceRecord, Gates]:
    """The candidate, the device record and the gates of one scenario."""
    if scenario == "window-closed":
        return replace(state, update_windows=SATURDAY), DeviceRecord(DEVICE), Gates()
    if scenario == "first-stack-locked" and state.stacks:
        mark = RevisionMark("0" * 40, NOW)
        empty = desired(revision="0" * 40)
        record = DeviceRecord(DEVICE, last_applied=mark, last_good=mark, last_good_state=empty)
        return state, record, Gates(held={state.stacks[0].name: None})
    return state, DeviceRecord(DEVICE), Gates()


def _planned(state: DesiredState, record: DeviceRecord, gates: Gates, rt: FakeRuntime) -> list[str]:
    decided = decide(record, state, gates, NOW)
    if decided.target is None:
        return []
    run = steps_toward(
        decided.target,
        observe_host(rt, decided.target),
        ahead=decided.ahead,
        gated=decided.window is not None,
        untouched=frozenset(decided.held_stacks),
    )
    return [s.describe() for s in run.to_run]


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
class TestPlanThenApply:
    def test_apply_runs_exactly_the_steps_plan_showed(
        self, path: Path, scenario: str, tmp_path: Path
    ) -> None:
        """The steps the executor ran are the steps plan listed, in the same order."""
        state, observed = _case(path, tmp_path / "host")
        state, record, gates = _gated(state, scenario)
        shown = _planned(state, record, gates, fixture_runtime(observed))
        store = StateStore(tmp_path / "state", DEVICE)
        store.save(record)
        result = reconcile_desired(
            state,
            tree=RepoTree(tmp_path),
            runtime=fixture_runtime(observed),
            store=store,
            gates=gates,
            clock=FakeClock(wall=NOW),
            settle=0.0,
        )
        ran = [] if result.update is None else [s.describe() for s in result.update.done]
        assert result.rollback is None, result.reason
        assert ran == shown, result.reason


class TestScenariosBite:
    def test_gates_change_what_runs(self, tmp_path: Path) -> None:
        """On a fresh device the closed window and the lock each withhold container steps."""
        state, observed = _case(FIXTURES[0], tmp_path)
        shown = {
            scenario: _planned(*_gated(state, scenario), fixture_runtime(observed))
            for scenario in SCENARIOS
        }
        assert any(line.startswith("create ") for line in shown["open"])
        assert shown["window-closed"]
        assert all(line.startswith("pull ") for line in shown["window-closed"])
        assert len(shown["first-stack-locked"]) < len(shown["open"])
