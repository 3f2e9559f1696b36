"""The clock jumping back and forward across an update window boundary (real engine).

The system clock is never changed: the pass takes wall time from its ``Clock`` port
(:class:`reconciler.reconcile.converge.Clock`); this one is the real clock shifted by an
offset the test sets, while monotonic time and sleeps stay real (the health gate waits
for the real containers).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest
from support.enginepass import apply_once, managed
from support.passes import FleetRepo

from reconciler.engine.docker import DockerEngine

pytestmark = pytest.mark.docker

WINDOW = (
    "labels: {{site: test}}\nstacks: [app, mqtt]\nupdateWindows:\n"
    "  - {{days: [sat], start: '01:00', end: '02:00', timezone: UTC}}\n"
)
INSIDE = datetime(2026, 3, 7, 1, 30, tzinfo=UTC)  # a Saturday, in the window
BEFORE = datetime(2026, 3, 6, 23, 59, 58, tzinfo=UTC)  # Friday, just before it
AFTER = datetime(2026, 3, 7, 2, 0, 1, tzinfo=UTC)  # just after it closed


@dataclass
class JumpClock:
    """Wall time = real time + ``offset`` (set by :meth:`jump`); monotonic and sleep real."""

    offset: timedelta = timedelta()

    def jump(self, to: datetime) -> None:
        self.offset = to - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture
def fleet(tmp_path: Path, device_id: str, busybox_image: str) -> FleetRepo:
    repo = FleetRepo(
        tmp_path / "fleet", device_id, APP_IMAGE=busybox_image, BROKER_IMAGE=busybox_image
    )
    repo.write(f"devices/{device_id}.yaml", WINDOW.format())
    repo.commit("only on Saturday night")
    return repo


@pytest.fixture
def engine() -> Iterator[DockerEngine]:
    with contextlib.closing(DockerEngine()) as eng:
        yield eng


class TestClockJumps:
    def test_jumps_across_the_window_boundary_gate_only_updates(
        self,
        fleet: FleetRepo,
        engine: DockerEngine,
        docker_client: docker.DockerClient,
        tmp_path: Path,
    ) -> None:
        """Back before the window: the update waits, nothing changes; forward into it: applied."""
        state, clock = tmp_path / "state", JumpClock()
        clock.jump(INSIDE)
        assert apply_once(fleet, engine, state, clock=clock, settle=0.5).outcome == "succeeded"
        first = managed(docker_client, fleet.device)
        fleet.commit(GREETING="servus")
        for moment in (BEFORE, AFTER, BEFORE):
            clock.jump(moment)
            waited = apply_once(fleet, engine, state, clock=clock, settle=0.5)
            assert waited.outcome == "waiting", (moment, waited.reason)
            assert "next opens 2026-03-07T01:00:00Z" in waited.reason or moment == AFTER
            assert managed(docker_client, fleet.device) == first
        clock.jump(INSIDE)
        done = apply_once(fleet, engine, state, clock=clock, settle=0.5)
        assert done.outcome == "succeeded", done.reason
        updated = managed(docker_client, fleet.device)
        assert sorted(updated) == sorted(first)
        assert {s for _, s, _ in updated.values()} == {"running"}
        broker = f"{fleet.device}_mqtt_broker"
        assert updated[broker][2] != first[broker][2]
        clock.jump(BEFORE)  # back again after the update: nothing to undo, nothing waits
        again = apply_once(fleet, engine, state, clock=clock, settle=0.5)
        assert again.outcome == "succeeded", again.reason
        assert managed(docker_client, fleet.device) == updated
