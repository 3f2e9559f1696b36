"""The gates in the pass: application update locks, and update windows that pull ahead.

Real repositories and real render against the in-memory engine (as test_reconcile.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakes import FakeRuntime
from support.passes import DEVICE, FleetRepo, ImageRuntime, creates, run_pass, running

from reconciler.store import StateStore

APP2 = "fleetgate-test/app:2"
BROKER2 = "fleetgate-test/broker:2"
UNTIL = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
WINDOW = (
    "labels: {site: test}\nstacks: [app, mqtt]\nupdateWindows:\n"
    "  - {days: [sat], start: '01:00', end: '02:00', timezone: UTC}\n"
)


@pytest.fixture
def fleet(tmp_path: Path) -> FleetRepo:
    return FleetRepo(tmp_path / "fleet", DEVICE)


@pytest.fixture
def runtime() -> ImageRuntime:
    return ImageRuntime()


def ids(runtime: FakeRuntime) -> dict[str, str]:
    return {c.name: c.id for c in runtime.containers.values()}


def pulls(runtime: FakeRuntime) -> list[str]:
    return [ref for call, ref in runtime.calls if call == "pull"]


def touched(runtime: FakeRuntime) -> list[tuple[str, str]]:
    """Every call that changed a container (anything but pull and inspect)."""
    return [(c, r) for c, r in runtime.calls if c not in ("pull", "inspect_container")]


def record(state: Path) -> tuple[str | None, str | None]:
    """The applied and last good revisions of the stored record."""
    rec = StateStore(state, DEVICE).load()
    return (
        None if rec.last_applied is None else rec.last_applied.revision,
        None if rec.last_good is None else rec.last_good.revision,
    )


class TestApplicationLock:
    """A stack whose application holds updates.lock keeps its last good definition."""

    def test_held_stack_keeps_containers_while_the_rest_updates(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """The held broker keeps its container and gets its new image pulled; the app updates."""
        state = tmp_path / "state"
        good = fleet.head
        run_pass(fleet, runtime, state)
        before = ids(runtime)
        fleet.commit(APP_IMAGE=APP2, BROKER_IMAGE=BROKER2)
        runtime.calls.clear()
        result = run_pass(fleet, runtime, state, held_stacks={"mqtt": UNTIL})
        assert result.outcome == "waiting", result.reason
        assert result.reason.startswith(
            "held by application lock: mqtt (updates.lock), until 2026-11-24T22:00:00Z "
            "or its removal"
        )
        assert result.held_stacks == ("mqtt",)
        assert result.stage == "gate"
        assert ids(runtime)["dev1_mqtt_broker"] == before["dev1_mqtt_broker"]
        assert running(runtime)["dev1_mqtt_broker"].image == "fleetgate-test/busybox:1"
        assert running(runtime)["dev1_app_web"].image == APP2
        assert creates(runtime) == ["dev1_app_web"]
        assert sorted(pulls(runtime)) == [APP2, BROKER2]
        assert all(ref != before["dev1_mqtt_broker"] for _, ref in touched(runtime))
        assert record(state) == (good, good)
        assert result.to_json()["held_stacks"] == ["mqtt"]

    def test_releasing_the_lock_converges_and_records_good(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """Once the lock is gone the held stack updates and the revision becomes last good."""
        state = tmp_path / "state"
        run_pass(fleet, runtime, state)
        new = fleet.commit(APP_IMAGE=APP2, BROKER_IMAGE=BROKER2)
        run_pass(fleet, runtime, state, held_stacks=frozenset({"mqtt"}))
        again = run_pass(fleet, runtime, state, held_stacks=frozenset({"mqtt"}))
        assert again.outcome == "waiting"
        assert again.reason == "held by application lock: mqtt (updates.lock), until its removal"
        runtime.calls.clear()
        released = run_pass(fleet, runtime, state)
        assert released.outcome == "succeeded", released.reason
        assert released.held_stacks == ()
        assert creates(runtime) == ["dev1_mqtt_broker"]
        assert pulls(runtime) == []  # pulled ahead while held
        assert running(runtime)["dev1_mqtt_broker"].image == BROKER2
        assert record(state) == (new, new)

    def test_lock_on_an_unchanged_stack_holds_nothing(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """A locked stack the revision does not change does not hold the update back."""
        state = tmp_path / "state"
        run_pass(fleet, runtime, state)
        new = fleet.commit(APP_IMAGE=APP2)
        result = run_pass(fleet, runtime, state, held_stacks=frozenset({"mqtt"}))
        assert result.outcome == "succeeded", result.reason
        assert result.held_stacks == ()
        assert record(state) == (new, new)

    def test_held_new_stack_is_not_created(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """A held stack the revision adds is left out until released; its image is pulled."""
        state = tmp_path / "state"
        fleet.set_stacks("app")
        fleet.commit()
        run_pass(fleet, runtime, state)
        fleet.set_stacks("app", "mqtt")
        fleet.commit(BROKER_IMAGE=BROKER2)
        runtime.calls.clear()
        result = run_pass(fleet, runtime, state, held_stacks=frozenset({"mqtt"}))
        assert result.outcome == "waiting", result.reason
        assert set(running(runtime)) == {"dev1_app_web"}
        assert pulls(runtime) == [BROKER2]
        assert touched(runtime) == []

    def test_held_removed_stack_keeps_running(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """A held stack the revision removes keeps running until released."""
        state = tmp_path / "state"
        run_pass(fleet, runtime, state)
        broker = ids(runtime)["dev1_mqtt_broker"]
        fleet.set_stacks("app")
        fleet.commit()
        result = run_pass(fleet, runtime, state, held_stacks=frozenset({"mqtt"}))
        assert result.outcome == "waiting", result.reason
        assert running(runtime)["dev1_mqtt_broker"].id == broker
        assert run_pass(fleet, runtime, state).outcome == "succeeded"
        assert set(running(runtime)) == {"dev1_app_web"}

    def test_failing_unheld_stack_rolls_back_around_the_held_one(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """An unheld stack failing its health gate rolls back; the held stack is untouched."""
        state = tmp_path / "state"
        good = fleet.head
        run_pass(fleet, runtime, state)
        broker = ids(runtime)["dev1_mqtt_broker"]
        runtime.crashing.add("fleetgate-test/crash:1")
        bad = fleet.commit(APP_IMAGE="fleetgate-test/crash:1", BROKER_IMAGE=BROKER2)
        result = run_pass(fleet, runtime, state, held_stacks=frozenset({"mqtt"}))
        assert result.outcome == "rolled-back", result.reason
        assert running(runtime)["dev1_mqtt_broker"].id == broker
        assert running(runtime)["dev1_app_web"].image == "fleetgate-test/busybox:1"
        rec = StateStore(state, DEVICE).load()
        assert [f.revision for f in rec.failed] == [bad]
        assert record(state) == (good, good)


class TestWindowGate:
    """Outside the update windows an update only pulls its images ahead."""

    def test_window_hold_pulls_ahead_and_changes_no_container(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """A new revision outside the windows downloads its images and touches no container."""
        state = tmp_path / "state"
        fleet.write(f"devices/{DEVICE}.yaml", WINDOW)
        good = fleet.commit()
        run_pass(fleet, runtime, state, ignore_windows=True)
        before = ids(runtime)
        fleet.commit(APP_IMAGE=APP2, BROKER_IMAGE=BROKER2)
        runtime.calls.clear()
        result = run_pass(fleet, runtime, state)
        assert result.outcome == "waiting", result.reason
        assert result.next_window == datetime(2026, 3, 7, 1, 0, tzinfo=UTC)
        assert result.to_json()["next_window"] == "2026-03-07T01:00:00Z"
        assert "next opens 2026-03-07T01:00:00Z" in result.reason
        assert sorted(pulls(runtime)) == [APP2, BROKER2]
        assert touched(runtime) == []
        assert ids(runtime) == before
        assert record(state) == (good, good)

    def test_window_and_lock_are_both_named(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """A closed window and a held stack: the reason names both, nothing switches."""
        state = tmp_path / "state"
        fleet.write(f"devices/{DEVICE}.yaml", WINDOW)
        fleet.commit()
        run_pass(fleet, runtime, state, ignore_windows=True)
        fleet.commit(APP_IMAGE=APP2, BROKER_IMAGE=BROKER2)
        runtime.calls.clear()
        result = run_pass(fleet, runtime, state, held_stacks=frozenset({"mqtt"}))
        assert result.outcome == "waiting"
        assert "outside the update windows" in result.reason
        assert "held by application lock: mqtt" in result.reason
        assert result.held_stacks == ("mqtt",)
        assert result.next_window is not None
        assert touched(runtime) == []

    def test_drift_repair_off_waits_for_the_window(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """With repair_drift off, a stopped container stays stopped outside the windows."""
        state = tmp_path / "state"
        fleet.write(f"devices/{DEVICE}.yaml", WINDOW)
        fleet.commit()
        run_pass(fleet, runtime, state, ignore_windows=True)
        broker = runtime.by_name("dev1_mqtt_broker")
        assert broker is not None
        broker.state, broker.exit_code = "exited", 137  # `docker stop` past the grace period
        runtime.calls.clear()
        result = run_pass(fleet, runtime, state, repair_drift=False)
        assert result.outcome == "waiting", result.reason
        assert "repairDrift is off" in result.reason
        assert result.next_window == datetime(2026, 3, 7, 1, 0, tzinfo=UTC)
        assert broker.state == "exited"
        assert touched(runtime) == []
        repaired = run_pass(fleet, runtime, state)
        assert repaired.outcome == "succeeded", repaired.reason
        assert "dev1_mqtt_broker" in running(runtime)
