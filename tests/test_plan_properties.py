"""Hypothesis properties of the planner, over generated desired and observed states.

Observed states include foreign containers and networks, stale and duplicate managed
containers in every engine state, leftovers of removed stacks, and missing images.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import structlog
from fakes import DEVICE, FakeRuntime, desired
from hypothesis import given
from hypothesis import strategies as st
from support.planstates import (
    ALL_STATES,
    CONFIG_REPO_PATH,
    SETTINGS,
    STACKS,
    config_content,
    desired_states,
    engines,
)

from reconciler.engine.apply import apply
from reconciler.model import (
    DesiredState,
)
from reconciler.plan.planner import (
    DESTRUCTIVE_KINDS,
    RemoveContainer,
    RemoveNetwork,
    StopContainer,
    plan,
)


@dataclass(frozen=True, slots=True)
class DictReader:
    """Config contents by repository path (what RepoTree provides in production)."""

    files: dict[str, bytes]

    def read_bytes(self, relpath: str) -> bytes:
        return self.files[relpath]


READER = DictReader({CONFIG_REPO_PATH.format(stack=s): config_content(s) for s in STACKS})


def _configure_jobs(rt: FakeRuntime, state: DesiredState) -> None:
    """Services with ``restart: no`` behave as one-shot jobs that exit 0."""
    for spec in state.services:
        if spec.restart == "no":
            rt.crash_on_start[spec.container_name] = 0


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def _apply(p: Any, rt: FakeRuntime) -> None:
    clock = _Clock()
    with structlog.testing.capture_logs():
        apply(p, rt, READER, structlog.get_logger(), clock=clock.now, sleep=clock.sleep)


@pytest.fixture(scope="module")
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("state")


class TestConvergence:
    @SETTINGS
    @given(data=st.data())
    def test_replanning_after_apply_is_empty(self, state_root: Path, data: st.DataObject) -> None:
        """Applying a plan, re-observing and planning again yields no steps."""
        state = data.draw(desired_states(str(state_root)))
        rt = data.draw(engines(tuple(s for s in ALL_STATES if s not in ("restarting", "paused"))))
        _configure_jobs(rt, state)
        _apply(plan(state, rt.observe(DEVICE)), rt)
        again = plan(state, rt.observe(DEVICE))
        assert again.describe() == ()

    @SETTINGS
    @given(data=st.data())
    def test_everything_not_blocked_runs_after_apply(
        self, state_root: Path, data: st.DataObject
    ) -> None:
        """After one apply every desired service not blocked runs with its desired hash."""
        state = data.draw(desired_states(str(state_root)))
        rt = data.draw(engines(tuple(s for s in ALL_STATES if s not in ("restarting", "paused"))))
        _configure_jobs(rt, state)
        result = plan(state, rt.observe(DEVICE))
        _apply(result, rt)
        held = " ".join((*result.blocked, *(n for n in result.notes if "being removed" in n)))
        for spec in state.services:
            c = rt.by_name(spec.container_name)
            if f"{spec.stack}/{spec.service}:" in held:
                continue
            assert c is not None and c.config_hash == spec.config_hash
            if spec.restart == "no":  # a one-shot job: done, or still running
                assert (c.state, c.exit_code) in (("exited", 0), ("running", None))
            else:
                assert c.state == "running"


class TestSafety:
    @SETTINGS
    @given(state=desired_states(), rt=engines())
    def test_destructive_steps_target_only_managed_objects(
        self, state: DesiredState, rt: FakeRuntime
    ) -> None:
        """No stop, remove or network removal names anything outside the managed observation."""
        observed = rt.observe(DEVICE)
        managed = {(c.id, c.name) for c in observed.containers}
        managed_nets = {n.name for n in observed.networks}
        for step in plan(state, observed).steps:
            if isinstance(step, StopContainer | RemoveContainer):
                assert (step.id, step.name) in managed
                assert step.name not in observed.foreign_names
            elif isinstance(step, RemoveNetwork):
                assert step.name in managed_nets
                assert step.name not in observed.foreign_networks

    @SETTINGS
    @given(state=desired_states(), rt=engines())
    def test_plans_are_deterministic(self, state: DesiredState, rt: FakeRuntime) -> None:
        """The same desired and observed state, in any listing order, give the same plan."""
        observed = rt.observe(DEVICE)
        shuffled = replace(
            observed,
            containers=observed.containers[::-1],
            networks=observed.networks[::-1],
            images=observed.images[::-1],
        )
        assert plan(state, observed) == plan(state, observed) == plan(state, shuffled)

    @SETTINGS
    @given(state=desired_states(), rt=engines())
    def test_every_pull_precedes_every_stop_and_remove(
        self, state: DesiredState, rt: FakeRuntime
    ) -> None:
        """Download-then-kill: the last pull comes before the first destructive step."""
        kinds = [s.kind for s in plan(state, rt.observe(DEVICE)).steps]
        pulls = [i for i, k in enumerate(kinds) if k == "pull"]
        kills = [i for i, k in enumerate(kinds) if k in DESTRUCTIVE_KINDS]
        assert not pulls or not kills or max(pulls) < min(kills)

    @SETTINGS
    @given(data=st.data())
    def test_volumes_and_data_dirs_survive(self, state_root: Path, data: st.DataObject) -> None:
        """No plan removes a volume or a data directory, even when every stack is removed."""
        state = data.draw(desired_states(str(state_root)))
        rt = data.draw(engines(tuple(s for s in ALL_STATES if s not in ("restarting", "paused"))))
        _configure_jobs(rt, state)
        _apply(plan(state, rt.observe(DEVICE)), rt)
        volumes = set(rt.volumes)
        dirs = [d for s in state.stacks for d in s.data_dirs if Path(d).is_dir()]
        assert {v.name for s in state.stacks for v in s.volumes} <= volumes
        nothing = desired()
        teardown = plan(nothing, rt.observe(DEVICE))
        assert {s.kind for s in teardown.steps} <= {"stop", "remove", "remove-network"}
        _apply(teardown, rt)
        assert set(rt.volumes) == volumes
        assert all(Path(d).is_dir() for d in dirs)
        assert all(c.state == "removing" for c in rt.observe(DEVICE).containers)
