"""The reconcile pass end to end on real repositories, real render and an in-memory engine.

``FleetRepo`` and ``FakeClock`` are shared with the Docker and crash tests
(``from test_reconcile import FleetRepo``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import FakeContainer, FakeRuntime
from structlog.testing import capture_logs
from support.passes import (
    DEVICE,
    FleetRepo,
    ImageRuntime,
    creates,
    run_pass,
    running,
)

from reconciler.errors import EngineError
from reconciler.manifests.tree import RepoTree
from reconciler.model import ObservedState
from reconciler.reconcile.converge import ConfigSource
from reconciler.render.desired import build_desired
from reconciler.store import StateStore


class BrokenRuntime(FakeRuntime):
    """An engine that stops answering."""

    def observe(self, device: str, *, brief: bool = False) -> ObservedState:
        raise EngineError("engine unreachable: connection refused")


@pytest.fixture
def fleet(tmp_path: Path) -> FleetRepo:
    return FleetRepo(tmp_path / "fleet", DEVICE)


@pytest.fixture
def runtime() -> ImageRuntime:
    return ImageRuntime()


class TestConverge:
    """A healthy revision converges, once, and only what changed is touched."""

    def test_fresh_device_converges(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """A device with nothing running gets every service, and the revision becomes last good."""
        result = run_pass(fleet, runtime, tmp_path / "state")
        assert result.outcome == "succeeded", result.reason
        assert set(running(runtime)) == {"dev1_app_web", "dev1_mqtt_broker"}
        record = StateStore(tmp_path / "state", DEVICE).load()
        assert record.last_good is not None and record.last_good.revision == fleet.head
        assert record.last_good_state is not None
        assert record.last_outcome == "succeeded"
        assert (tmp_path / "state/data/dev1/app/state").is_dir()

    def test_second_pass_recreates_nothing(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """Applying the same revision again is a no-op that says so."""
        run_pass(fleet, runtime, tmp_path / "state")
        ids = {c.name: c.id for c in runtime.containers.values()}
        runtime.calls.clear()
        result = run_pass(fleet, runtime, tmp_path / "state")
        assert result.outcome == "succeeded"
        assert result.reason == "already converged; nothing to do"
        assert {c.name: c.id for c in runtime.containers.values()} == ids
        assert runtime.calls == []

    def test_changed_variable_recreates_only_that_service(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """A new GREETING recreates the broker and leaves the app container alone."""
        run_pass(fleet, runtime, tmp_path / "state")
        web = running(runtime)["dev1_app_web"].id
        fleet.commit(GREETING="servus")
        runtime.calls.clear()
        result = run_pass(fleet, runtime, tmp_path / "state")
        assert result.outcome == "succeeded", result.reason
        assert creates(runtime) == ["dev1_mqtt_broker"]
        assert running(runtime)["dev1_app_web"].id == web

    def test_secret_values_stay_out_of_results_and_logs(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """Environment values appear neither in the pass result nor in any log event."""
        fleet.commit(GREETING="pa55-w0rd-value")
        with capture_logs() as logs:
            result = run_pass(fleet, runtime, tmp_path / "state")
        assert result.outcome == "succeeded"
        assert "pa55-w0rd-value" not in json.dumps(result.to_json())
        assert "pa55-w0rd-value" not in repr(logs)
        finished = [e for e in logs if e["event"] == "pass.finished"]
        assert finished and finished[0]["device"] == DEVICE
        assert finished[0]["revision"] == fleet.head

    def test_result_json_has_full_shas_and_utc_times(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """The JSON form carries 40-hex revisions and RFC 3339 UTC times."""
        data = run_pass(fleet, runtime, tmp_path / "state").to_json()
        assert data["revision"] == fleet.head and len(fleet.head) == 40
        assert data["last_good_revision"] == fleet.head
        assert str(data["started_at"]).endswith("Z")
        assert data["outcome"] == "succeeded"


class TestRollback:
    """A revision that fails its health gate is recorded and rolled back."""

    def test_crashing_image_rolls_back_to_last_good(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """A crashing broker image is replaced by the last good one, and the failure remembered."""
        good = fleet.head
        run_pass(fleet, runtime, tmp_path / "state")
        runtime.add_image("fleetgate-test/crash:1")
        runtime.crashing.add("fleetgate-test/crash:1")
        bad = fleet.commit(BROKER_IMAGE="fleetgate-test/crash:1")
        result = run_pass(fleet, runtime, tmp_path / "state")
        assert result.outcome == "rolled-back", result.reason
        assert "mqtt/broker: exited with code 3" in result.reason
        assert running(runtime)["dev1_mqtt_broker"].image == "fleetgate-test/busybox:1"
        record = StateStore(tmp_path / "state", DEVICE).load()
        assert [f.revision for f in record.failed] == [bad]
        assert record.last_applied is not None and record.last_applied.revision == good
        assert record.last_good is not None and record.last_good.revision == good

    def test_failed_revision_is_not_retried_until_asked(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """Re-applying a failed revision does nothing but say so, unless retry is set."""
        run_pass(fleet, runtime, tmp_path / "state")
        runtime.sick.add("fleetgate-test/sick:1")
        runtime.add_image("fleetgate-test/sick:1")
        bad = fleet.commit(APP_IMAGE="fleetgate-test/sick:1")
        assert run_pass(fleet, runtime, tmp_path / "state").outcome == "rolled-back"
        runtime.calls.clear()
        again = run_pass(fleet, runtime, tmp_path / "state")
        assert again.outcome == "failed-no-change"
        assert again.reason.startswith(f"revision {bad} failed health before: app/web: unhealthy")
        assert again.reason.endswith("push a fix or run with --retry")
        assert runtime.calls == []
        retried = run_pass(fleet, runtime, tmp_path / "state", retry=True)
        assert retried.outcome == "rolled-back"
        assert creates(runtime) == ["dev1_app_web", "dev1_app_web"]

    def test_new_revision_after_failure_is_applied(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """A fix pushed after a failed revision is applied normally."""
        run_pass(fleet, runtime, tmp_path / "state")
        runtime.add_image("fleetgate-test/crash:1")
        runtime.crashing.add("fleetgate-test/crash:1")
        fleet.commit(BROKER_IMAGE="fleetgate-test/crash:1")
        run_pass(fleet, runtime, tmp_path / "state")
        fixed = fleet.commit(BROKER_IMAGE="fleetgate-test/busybox:1", GREETING="fixed")
        result = run_pass(fleet, runtime, tmp_path / "state")
        assert result.outcome == "succeeded", result.reason
        assert result.last_good_revision == fixed

    def test_failed_revision_restores_drifted_last_good(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """While the desired revision is a failed one, the last good state is kept converged."""
        run_pass(fleet, runtime, tmp_path / "state")
        runtime.add_image("fleetgate-test/crash:1")
        runtime.crashing.add("fleetgate-test/crash:1")
        fleet.commit(BROKER_IMAGE="fleetgate-test/crash:1")
        run_pass(fleet, runtime, tmp_path / "state")
        runtime.vanish("dev1_app_web")  # as if a crash interrupted the rollback
        result = run_pass(fleet, runtime, tmp_path / "state")
        assert result.outcome == "rolled-back", result.reason
        assert set(running(runtime)) == {"dev1_app_web", "dev1_mqtt_broker"}

    def test_first_ever_failure_leaves_device_as_is(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """Without a last good state there is nothing to roll back to: report and hold."""
        runtime.crashing.add("fleetgate-test/busybox:1")
        result = run_pass(fleet, runtime, tmp_path / "state")
        assert result.outcome == "failed"
        assert result.reason.endswith("no last good revision to roll back to")
        runtime.calls.clear()
        again = run_pass(fleet, runtime, tmp_path / "state")
        assert again.outcome == "failed-no-change"
        assert runtime.calls == []


class TestNothingChanges:
    """Invalid input, blocked plans and failed pulls change nothing."""

    def test_invalid_manifest_is_rejected_untouched(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """A compose file using an unsupported key is rejected with file and line."""
        run_pass(fleet, runtime, tmp_path / "state")
        runtime.calls.clear()
        fleet.write("stacks/mqtt/compose.yaml", "services:\n  broker:\n    build: .\n")
        fleet.commit()
        result = run_pass(fleet, runtime, tmp_path / "state")
        assert result.outcome == "rejected"
        assert result.findings and result.findings[0].path == "stacks/mqtt/compose.yaml"
        assert runtime.calls == []
        assert len(running(runtime)) == 2

    def test_policy_violation_is_rejected(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """A privileged service the fleet policy does not allow is rejected before anything runs."""
        compose = (fleet.path / "stacks/mqtt/compose.yaml").read_text()
        fleet.write(
            "stacks/mqtt/compose.yaml",
            compose.replace("    init: true\n", "    init: true\n    privileged: true\n"),
        )
        fleet.commit()
        result = run_pass(fleet, runtime, tmp_path / "state")
        assert result.outcome == "rejected"
        assert result.stage == "policy"
        assert "privileged" in result.reason
        assert runtime.containers == {}

    def test_pull_failure_keeps_old_containers(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """When a needed image cannot be pulled, nothing is stopped."""
        run_pass(fleet, runtime, tmp_path / "state")
        before = {c.name: c.id for c in running(runtime).values()}
        runtime.failing_pulls.add("127.0.0.1:5999/missing:1")
        runtime.calls.clear()
        fleet.commit(BROKER_IMAGE="127.0.0.1:5999/missing:1")
        result = run_pass(fleet, runtime, tmp_path / "state")
        assert result.outcome == "failed-no-change"
        assert "127.0.0.1:5999/missing:1 could not be pulled" in result.reason
        assert {c.name: c.id for c in running(runtime).values()} == before
        assert [c for c, _ in runtime.calls] == ["pull"]
        assert StateStore(tmp_path / "state", DEVICE).load().failed == ()

    def test_foreign_container_with_managed_name_blocks(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """An unmanaged container named like a managed one is never touched; the pass says why."""
        runtime.add_container(FakeContainer(id="foreign", name="dev1_mqtt_broker"))
        result = run_pass(fleet, runtime, tmp_path / "state")
        assert result.outcome == "failed-no-change"
        assert "dev1_mqtt_broker" in result.reason
        assert runtime.containers["foreign"].state == "running"
        assert all(ref != "foreign" for _, ref in runtime.calls)

    def test_engine_failure_still_writes_state(self, fleet: FleetRepo, tmp_path: Path) -> None:
        """An unreachable engine ends the pass as failed, and the record says so."""
        result = run_pass(fleet, BrokenRuntime(), tmp_path / "state")
        assert result.outcome == "failed"
        assert "connection refused" in result.reason
        record = StateStore(tmp_path / "state", DEVICE).load()
        assert record.last_outcome == "failed" and record.last_pass_at is not None


class TestWindows:
    """Updates wait for update windows; drift repair does not."""

    WINDOW = (
        "labels: {site: test}\nstacks: [app, mqtt]\nupdateWindows:\n"
        "  - {days: [sat], start: '01:00', end: '02:00', timezone: UTC}\n"
    )

    def test_update_outside_window_waits(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """A new revision outside the windows changes nothing and says when it may run."""
        fleet.write(f"devices/{DEVICE}.yaml", self.WINDOW)
        fleet.commit()
        result = run_pass(fleet, runtime, tmp_path / "state")
        assert result.outcome == "waiting"
        assert "next opens 2026-03-07T01:00:00Z" in result.reason
        assert runtime.containers == {}
        forced = run_pass(fleet, runtime, tmp_path / "state", ignore_windows=True)
        assert forced.outcome == "succeeded"

    def test_drift_repair_runs_outside_window(
        self, fleet: FleetRepo, runtime: ImageRuntime, tmp_path: Path
    ) -> None:
        """A vanished container of the applied revision is recreated any time."""
        fleet.write(f"devices/{DEVICE}.yaml", self.WINDOW)
        fleet.commit()
        run_pass(fleet, runtime, tmp_path / "state", ignore_windows=True)
        runtime.vanish("dev1_mqtt_broker")
        result = run_pass(fleet, runtime, tmp_path / "state")
        assert result.outcome == "succeeded", result.reason
        assert "dev1_mqtt_broker" in running(runtime)


class TestRollbackConfigs:
    """A rollback finds the config contents of the last good revision."""

    def test_reads_materialized_copy_when_tree_changed(
        self, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """When the tree holds newer content, the digest-checked materialized copy is used."""
        state = tmp_path / "state"
        old = build_desired(RepoTree(fleet.path), fleet.head, DEVICE, str(state))
        cfg = old.stacks[0].config_files[0]
        Path(cfg.host_path).parent.mkdir(parents=True)
        Path(cfg.host_path).write_bytes((fleet.path / cfg.repo_path).read_bytes())
        fleet.write(cfg.repo_path, "mode=changed\n")
        assert (
            ConfigSource(RepoTree(fleet.path), old).read_bytes(cfg.repo_path)
            == b"mode=production\n"
        )
        Path(cfg.host_path).unlink()
        with pytest.raises(EngineError, match=r"stacks/app/app\.conf .* is not available"):
            ConfigSource(RepoTree(fleet.path), old).read_bytes(cfg.repo_path)
