"""Create before stop and failed releases (issue 14, safety rule 9) on the fake engine.

The real-engine acceptance case (a host port taken outside fleetgate) is in
``tests/test_faults_engine.py``; these pin the rules cheaply: a create failure touches
nothing running, a failure after the old container went is rolled back and remembered,
and crash leftovers under a temporary name are cleaned up.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeContainer
from support.passes import DEVICE, FleetRepo, ImageRuntime, run_pass, running

from reconciler.errors import EngineError
from reconciler.manifests.tree import RepoTree
from reconciler.model import ServiceSpec
from reconciler.plan.planner import plan
from reconciler.plan.steps import temp_name
from reconciler.render.desired import build_desired
from reconciler.store import StateStore

BAD = "fleetgate-test/busy-port:1"


def head_broker(fleet: FleetRepo, state: Path) -> ServiceSpec:
    """The broker's spec in the fleet head's desired state (to name its temporary container)."""
    desired = build_desired(RepoTree(fleet.path), fleet.head, DEVICE, str(state))
    return next(s for st in desired.stacks for s in st.services if s.service == "broker")


class RefusingRuntime(ImageRuntime):
    """The fake engine; containers of ``BAD`` cannot start (like a host port in use)."""

    def start_container(self, container_id: str) -> None:
        if self._find(container_id).image == BAD:
            self.calls.append(("start_container", container_id))
            raise EngineError("driver failed programming external connectivity: address in use")
        super().start_container(container_id)


@pytest.fixture
def fleet(tmp_path: Path) -> FleetRepo:
    return FleetRepo(tmp_path / "fleet", DEVICE)


def names(runtime: ImageRuntime) -> list[str]:
    return sorted(c.name for c in runtime.containers.values())


class TestCreateBeforeStop:
    def test_update_creates_the_new_container_before_stopping_the_old(
        self, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """An update creates under a temporary name first, then stop, remove, rename, start."""
        rt = RefusingRuntime()
        run_pass(fleet, rt, tmp_path / "state")
        fleet.commit(GREETING="servus")
        rt.calls.clear()
        assert run_pass(fleet, rt, tmp_path / "state").outcome == "succeeded"
        kinds = [k for k, _ in rt.calls if k.endswith("_container") and k != "inspect_container"]
        assert kinds[:5] == [
            "create_container",
            "stop_container",
            "remove_container",
            "rename_container",
            "start_container",
        ]
        assert names(rt) == ["dev1_app_web", "dev1_mqtt_broker"]

    def test_a_failed_create_touches_nothing_running(
        self, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """When the new container cannot be created the old one runs on; the pass is retryable."""
        rt = RefusingRuntime()
        run_pass(fleet, rt, tmp_path / "state")
        before = running(rt)["dev1_mqtt_broker"].id
        fleet.commit(BROKER_IMAGE="fleetgate-test/missing:1")
        rt.failing_pulls.add("fleetgate-test/missing:1")
        result = run_pass(fleet, rt, tmp_path / "state")
        assert result.outcome == "failed-no-change", result.reason
        assert running(rt)["dev1_mqtt_broker"].id == before
        assert StateStore(tmp_path / "state", DEVICE).load().failed == ()


class TestFailedRelease:
    def test_a_start_failure_after_the_swap_rolls_back_and_is_not_retried(
        self, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """A new container that cannot start is a failed release: rolled back, remembered."""
        rt = RefusingRuntime()
        rt.add_image(BAD)
        good = fleet.head
        run_pass(fleet, rt, tmp_path / "state")
        bad = fleet.commit(BROKER_IMAGE=BAD)
        result = run_pass(fleet, rt, tmp_path / "state")
        assert result.outcome == "rolled-back", result.reason
        assert f"revision {bad} failed: start mqtt/broker failed: driver failed" in result.reason
        assert running(rt)["dev1_mqtt_broker"].image == "fleetgate-test/busybox:1"
        assert names(rt) == ["dev1_app_web", "dev1_mqtt_broker"]
        record = StateStore(tmp_path / "state", DEVICE).load()
        assert [f.revision for f in record.failed] == [bad]
        assert record.last_good is not None and record.last_good.revision == good
        rt.calls.clear()
        again = run_pass(fleet, rt, tmp_path / "state")
        assert again.outcome == "failed-no-change"
        assert rt.calls == []

    def test_an_engine_error_before_any_change_stays_retryable(
        self, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """A create refused by the engine fails the pass without recording the revision failed."""
        rt = RefusingRuntime()
        run_pass(fleet, rt, tmp_path / "state")
        fleet.commit(GREETING="servus")
        broker = head_broker(fleet, tmp_path / "state")
        rt.add_container(FakeContainer(id="foreign1", name=temp_name(broker)))  # not ours
        result = run_pass(fleet, rt, tmp_path / "state")
        assert result.outcome == "failed", result.reason
        assert "is taken" in result.reason
        assert running(rt)["dev1_mqtt_broker"].state == "running"
        assert StateStore(tmp_path / "state", DEVICE).load().failed == ()


class TestLeftovers:
    def test_a_temporary_container_left_by_a_crash_is_removed(
        self, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """A leftover under a temporary name (old one still running) goes before the new create."""
        rt = RefusingRuntime()
        run_pass(fleet, rt, tmp_path / "state")
        fleet.commit(GREETING="servus")
        desired = build_desired(RepoTree(fleet.path), fleet.head, DEVICE, str(tmp_path / "state"))
        broker = next(s for st in desired.stacks for s in st.services if s.service == "broker")
        rt.create_container(broker, fleet.head, temp_name(broker))  # the crash left it
        steps = plan(desired, rt.observe(DEVICE)).describe()
        broker_steps = [s.split(":")[0] for s in steps if "mqtt/broker" in s]
        assert broker_steps[:2] == [
            f"remove mqtt/broker ({temp_name(broker)})",
            f"create mqtt/broker as {temp_name(broker)}",
        ]
        assert run_pass(fleet, rt, tmp_path / "state").outcome == "succeeded"
        assert names(rt) == ["dev1_app_web", "dev1_mqtt_broker"]

    def test_only_a_temporary_container_left_converges_to_the_real_name(
        self, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """A crash after the old one was removed leaves only the temporary one: next pass fixes."""
        rt = RefusingRuntime()
        run_pass(fleet, rt, tmp_path / "state")
        fleet.commit(GREETING="servus")
        broker = head_broker(fleet, tmp_path / "state")
        old = running(rt)["dev1_mqtt_broker"]
        rt.create_container(broker, fleet.head, temp_name(broker))
        rt.stop_container(old.id, None)
        rt.remove_container(old.id)
        assert run_pass(fleet, rt, tmp_path / "state").outcome == "succeeded"
        assert names(rt) == ["dev1_app_web", "dev1_mqtt_broker"]
        assert running(rt)["dev1_mqtt_broker"].config_hash == broker.config_hash
