"""`plan` tells the truth about gates: a closed window or a held lock on the real engine.

A device runs an older revision; a newer one waits (closed update window, or an
application's ``updates.lock``). ``fleetgate plan`` must not list container steps and
must print the reason; ``fleetgate apply`` must change nothing (same container ids).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest
import yaml
from support.cliproc import fleetgate, target
from support.engine import ImageBuilder
from support.passes import FleetRepo

from reconciler.model import WEEKDAYS

CONTAINER_STEP = re.compile(r"^\s*\d+\. (stop|remove|create|start) ")


@pytest.fixture
def fleet(tmp_path: Path, device_id: str, busybox_image: str) -> FleetRepo:
    return FleetRepo(
        tmp_path / "fleet", device_id, APP_IMAGE=busybox_image, BROKER_IMAGE=busybox_image
    )


def container_ids(client: docker.DockerClient, device: str) -> dict[str, str]:
    found = client.containers.list(all=True, filters={"label": f"io.fleetgate.device={device}"})
    return {c.name: c.id for c in found}


def closed_window(fleet: FleetRepo) -> tuple[str, datetime]:
    """Give the device a one-minute window three days from now; (its day, its opening)."""
    day = datetime.now(UTC).date() + timedelta(days=3)
    name = WEEKDAYS[day.weekday()]
    window = {"days": [name], "start": "03:00", "end": "03:01", "timezone": "UTC"}
    body = {"labels": {"site": "test"}, "stacks": ["app", "mqtt"], "updateWindows": [window]}
    fleet.write(f"devices/{fleet.device}.yaml", yaml.safe_dump(body))
    return name, datetime(day.year, day.month, day.day, 3, 0, tzinfo=UTC)


@pytest.mark.docker
class TestClosedWindow:
    """An update outside the window: plan shows no container steps, apply touches nothing."""

    def test_plan_shows_the_wait_and_apply_changes_nothing(
        self, fleet: FleetRepo, tmp_path: Path, docker_client: docker.DockerClient
    ) -> None:
        """plan names the window and its next opening; apply keeps every container."""
        state = tmp_path / "state"
        assert fleetgate("apply", *target(fleet, state)).returncode == 0
        before = container_ids(docker_client, fleet.device)
        day, opens = closed_window(fleet)
        fleet.commit(GREETING="changed")
        shown = fleetgate("plan", *target(fleet, state))
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert not [line for line in lines if CONTAINER_STEP.match(line)], shown.stdout
        when = f"{opens:%Y-%m-%dT%H:%M:%SZ}, {day.capitalize()} 03:00 UTC"
        assert f"waits: outside the update windows (next opens {when}); " in shown.stdout
        assert "run with --ignore-windows to update now" in shown.stdout
        assert re.search(r"^waiting: \d+ step\(s\) run when the update window opens$",
                         shown.stdout, re.M)  # fmt: skip
        data = json.loads(fleetgate("plan", *target(fleet, state), "-o", "json").stdout)
        assert [w["kind"] for w in data["pass"]["waits"]] == ["window"]
        assert data["steps"] == [] and data["waiting_steps"]
        ran = fleetgate("apply", *target(fleet, state))
        assert ran.returncode == 1
        assert ran.stdout.splitlines()[-1].startswith("waiting: outside the update windows")
        assert container_ids(docker_client, fleet.device) == before

    def test_plan_with_ignore_windows_lists_what_apply_runs(
        self, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """With --ignore-windows plan lists the container steps and apply runs them."""
        state = tmp_path / "state"
        assert fleetgate("apply", *target(fleet, state)).returncode == 0
        closed_window(fleet)
        fleet.commit(GREETING="changed")
        shown = fleetgate("plan", *target(fleet, state), "--ignore-windows", "-o", "json")
        planned = [s["kind"] for s in json.loads(shown.stdout)["steps"]]
        assert "create" in planned
        ran = fleetgate("apply", *target(fleet, state), "--ignore-windows", "-o", "json")
        assert json.loads(ran.stdout)["outcome"] == "succeeded"
        assert [s["kind"] for s in json.loads(ran.stdout)["update"]["steps"]] == planned


@pytest.mark.docker
class TestHeldLock:
    """An update of a stack whose application holds updates.lock waits, in plan and apply."""

    def test_plan_names_the_lock_and_apply_changes_nothing(
        self,
        fleet: FleetRepo,
        tmp_path: Path,
        docker_client: docker.DockerClient,
        image_builder: ImageBuilder,
    ) -> None:
        """plan lists no container step and names the lock; apply keeps every container."""
        state = tmp_path / "state"
        assert fleetgate("apply", *target(fleet, state)).returncode == 0
        before = container_ids(docker_client, fleet.device)
        lock = state / "locks" / fleet.device / "mqtt" / "updates.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text("batch 42\n")
        newer = image_builder.build("broker2", "FROM {base}\nLABEL variant=2\n")
        fleet.commit(BROKER_IMAGE=newer)
        shown = fleetgate("plan", *target(fleet, state))
        assert shown.returncode == 0, shown.stderr
        assert not [line for line in shown.stdout.splitlines() if CONTAINER_STEP.match(line)]
        assert "waits: held by application lock: mqtt (updates.lock), until " in shown.stdout
        assert "nothing runs now" in shown.stdout
        ran = fleetgate("apply", *target(fleet, state))
        assert ran.returncode == 1
        assert ran.stdout.splitlines()[-1].startswith(
            "waiting: held by application lock: mqtt (updates.lock)"
        )
        assert container_ids(docker_client, fleet.device) == before
        lock.unlink()
        shown = fleetgate("plan", *target(fleet, state))
        assert [line for line in shown.stdout.splitlines() if CONTAINER_STEP.match(line)]


@pytest.mark.docker
class TestFailedRevision:
    """After a rollback, plan says the device stays on last good and why, like apply."""

    def test_plan_names_the_failure_and_the_last_good_revision(
        self, fleet: FleetRepo, tmp_path: Path, image_builder: ImageBuilder
    ) -> None:
        """plan shows no step, the failed revision's reason and --retry; apply agrees."""
        crash = image_builder.build("crash", 'FROM {base}\nENTRYPOINT ["sh", "-c", "exit 3"]\n')
        state = tmp_path / "state"
        good = fleet.head
        assert fleetgate("apply", *target(fleet, state)).returncode == 0
        bad = fleet.commit(BROKER_IMAGE=crash)
        assert fleetgate("apply", *target(fleet, state)).returncode == 1
        shown = fleetgate("plan", *target(fleet, state))
        assert f"pass: stay on / return to the last good revision {good}" in shown.stdout
        assert f"waits: revision {bad} failed health before: mqtt/broker: " in shown.stdout
        assert "push a fix or run with --retry" in shown.stdout
        assert "nothing runs now" in shown.stdout
        retry = json.loads(fleetgate("plan", *target(fleet, state), "--retry", "-o", "json").stdout)
        assert retry["pass"]["kind"] == "update" and retry["steps"]
        held = fleetgate("apply", *target(fleet, state))
        assert held.stdout.splitlines()[-1].startswith(
            f"failed-no-change: revision {bad} failed health before"
        )
