"""The reconcile pass on the real Docker engine with locally built busybox images.

Each test owns one device id (its managed objects are removed afterwards) and a fleet
repository in tmp_path with one commit per revision.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from support.engine import ImageBuilder
from support.enginepass import apply_once, managed
from support.passes import FleetRepo
from support.registry import Registry

from reconciler.engine.docker import DockerEngine

pytestmark = pytest.mark.docker


@pytest.fixture
def fleet(tmp_path: Path, device_id: str, busybox_image: str) -> FleetRepo:
    return FleetRepo(
        tmp_path / "fleet", device_id, APP_IMAGE=busybox_image, BROKER_IMAGE=busybox_image
    )


@pytest.fixture
def engine() -> Iterator[DockerEngine]:
    eng = DockerEngine()
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def crash_image(image_builder: ImageBuilder) -> str:
    """Exits with code 3 whatever command it is given."""
    return image_builder.build("crash", 'FROM {base}\nENTRYPOINT ["sh", "-c", "exit 3"]\n')


@pytest.fixture(scope="module")
def sick_image(image_builder: ImageBuilder) -> str:
    """Runs, but the fixture's app healthcheck reports it unhealthy (/unhealthy exists)."""
    return image_builder.build("sick", 'FROM {base}\nRUN ["touch", "/unhealthy"]\n')


def ids(client: docker.DockerClient, device: str) -> dict[str, str]:
    return {name: cid for name, (cid, _, _) in managed(client, device).items()}


class TestConvergeOnEngine:
    """Converging, re-applying and updating on the real engine."""

    def test_fresh_then_same_then_changed_variable(
        self,
        fleet: FleetRepo,
        engine: DockerEngine,
        docker_client: docker.DockerClient,
        tmp_path: Path,
    ) -> None:
        """A fresh device converges, re-applying recreates nothing, a variable recreates one."""
        dev, state = fleet.device, tmp_path / "state"
        first = apply_once(fleet, engine, state)
        assert first.outcome == "succeeded", first.reason
        running = managed(docker_client, dev)
        assert set(running) == {f"{dev}_app_web", f"{dev}_mqtt_broker"}
        assert {status for _, status, _ in running.values()} == {"running"}
        before = ids(docker_client, dev)

        second = apply_once(fleet, engine, state)
        assert second.outcome == "succeeded" and second.reason.startswith("already converged")
        assert ids(docker_client, dev) == before

        fleet.commit(GREETING="servus")
        third = apply_once(fleet, engine, state)
        assert third.outcome == "succeeded", third.reason
        after = ids(docker_client, dev)
        assert after[f"{dev}_app_web"] == before[f"{dev}_app_web"]
        assert after[f"{dev}_mqtt_broker"] != before[f"{dev}_mqtt_broker"]

    def test_removed_stack_goes_but_its_data_stays(
        self,
        fleet: FleetRepo,
        engine: DockerEngine,
        docker_client: docker.DockerClient,
        tmp_path: Path,
    ) -> None:
        """Removing a stack removes its containers and network; its volume and data dir stay."""
        dev, state = fleet.device, tmp_path / "state"
        assert apply_once(fleet, engine, state).outcome == "succeeded"
        data_dir = state / "data" / dev / "app" / "state"
        (data_dir / "keep.txt").write_text("batch 17")
        fleet.set_stacks("mqtt")
        fleet.commit("drop app")
        result = apply_once(fleet, engine, state)
        assert result.outcome == "succeeded", result.reason
        assert set(managed(docker_client, dev)) == {f"{dev}_mqtt_broker"}
        with pytest.raises(docker.errors.NotFound):
            docker_client.networks.get(f"{dev}_app_default")
        assert docker_client.volumes.get(f"{dev}_app_appdata") is not None
        assert (data_dir / "keep.txt").read_text() == "batch 17"

    def test_unmanaged_container_is_never_touched(
        self,
        fleet: FleetRepo,
        engine: DockerEngine,
        docker_client: docker.DockerClient,
        *,
        busybox_image: str,
        test_labels: dict[str, str],
        tmp_path: Path,
    ) -> None:
        """A foreign container named like a managed one blocks that service and stays running."""
        dev = fleet.device
        foreign = docker_client.containers.run(
            busybox_image,
            ["sleep", "3600"],
            name=f"{dev}_mqtt_broker",
            labels=test_labels,
            detach=True,
            init=True,
        )
        try:
            result = apply_once(fleet, engine, tmp_path / "state")
            assert result.outcome == "failed-no-change"
            assert f"{dev}_mqtt_broker" in result.reason
            foreign.reload()
            assert foreign.status == "running"
            assert managed(docker_client, dev) == {}
        finally:
            foreign.remove(force=True)


class TestRollbackOnEngine:
    """Failed health gates roll back on the real engine; data survives."""

    def test_crash_rolls_back_and_data_survives(
        self,
        fleet: FleetRepo,
        engine: DockerEngine,
        docker_client: docker.DockerClient,
        crash_image: str,
        tmp_path: Path,
    ) -> None:
        """A crashing image rolls back, data dir and volume survive, the bad revision is held."""
        dev, state = fleet.device, tmp_path / "state"
        assert apply_once(fleet, engine, state).outcome == "succeeded"
        web = docker_client.containers.get(f"{dev}_app_web")
        assert (
            web.exec_run(
                ["sh", "-c", "echo v1 > /data/vol.txt && echo v1 > /state/dir.txt"]
            ).exit_code
            == 0
        )
        fleet.write("stacks/app/app.conf", "mode=production\nlevel=2\n")
        fleet.commit("app config change")
        assert apply_once(fleet, engine, state).outcome == "succeeded"  # an update
        good = ids(docker_client, dev)

        bad = fleet.commit(APP_IMAGE=crash_image)
        result = apply_once(fleet, engine, state)
        assert result.outcome == "rolled-back", result.reason
        assert "app/web: exited with code 3" in result.reason
        web = docker_client.containers.get(f"{dev}_app_web")
        assert web.status == "running" and web.id != good[f"{dev}_app_web"]
        assert web.exec_run(["cat", "/data/vol.txt", "/state/dir.txt"]).output == b"v1\nv1\n"

        again = apply_once(fleet, engine, state)
        assert again.outcome == "failed-no-change"
        assert again.reason.startswith(f"revision {bad} failed health before")
        assert ids(docker_client, dev)[f"{dev}_app_web"] == web.id

        retried = apply_once(fleet, engine, state, retry=True)
        assert retried.outcome == "rolled-back", retried.reason

    def test_unhealthy_rolls_back(
        self,
        fleet: FleetRepo,
        engine: DockerEngine,
        docker_client: docker.DockerClient,
        sick_image: str,
        tmp_path: Path,
    ) -> None:
        """An image whose healthcheck fails rolls the device back to the last good image."""
        dev, state = fleet.device, tmp_path / "state"
        assert apply_once(fleet, engine, state).outcome == "succeeded"
        fleet.commit(APP_IMAGE=sick_image)
        result = apply_once(fleet, engine, state)
        assert result.outcome == "rolled-back", result.reason
        assert "app/web: unhealthy" in result.reason
        web = docker_client.containers.get(f"{dev}_app_web")
        # The reference the container was created from (image ids are shared by many
        # tags in a test run, so tags say nothing).
        assert web.status == "running"
        assert web.attrs["Config"]["Image"] == fleet.variables["BROKER_IMAGE"]

    def test_pull_failure_keeps_old_containers(
        self,
        fleet: FleetRepo,
        engine: DockerEngine,
        docker_client: docker.DockerClient,
        registry: Registry,
        tmp_path: Path,
    ) -> None:
        """An image missing from the registry leaves the running containers as they are."""
        dev, state = fleet.device, tmp_path / "state"
        assert apply_once(fleet, engine, state).outcome == "succeeded"
        before = managed(docker_client, dev)
        fleet.commit(BROKER_IMAGE=registry.ref(f"{dev}/missing:1"))
        result = apply_once(fleet, engine, state)
        assert result.outcome == "failed-no-change"
        assert "could not be pulled" in result.reason
        assert managed(docker_client, dev) == before
