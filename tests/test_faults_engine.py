"""Faults on the real (shared) Docker engine that do not need an engine of their own.

The issue 14 acceptance case: an update whose new container cannot start because its
host port is held by a process outside fleetgate ends with the old version running,
outcome ``rolled-back``, and the revision not retried.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from support.enginepass import apply_once, managed
from support.passes import HEALTHY_1S, FleetRepo, broker_on_port

from reconciler.engine.docker import DockerEngine
from reconciler.store import StateStore

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


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback TCP port held, listening, by this test process (not by fleetgate)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield int(s.getsockname()[1])


class TestUnstartableUpdate:
    def test_a_port_taken_outside_fleetgate_rolls_back_and_is_not_retried(
        self,
        fleet: FleetRepo,
        engine: DockerEngine,
        docker_client: docker.DockerClient,
        taken_port: int,
        tmp_path: Path,
    ) -> None:
        """The old broker runs again, the outcome is rolled-back, the next pass touches nothing."""
        state = tmp_path / "state"
        good = fleet.head
        assert apply_once(fleet, engine, state, settle=0.5).outcome == "succeeded"
        before = managed(docker_client, fleet.device)
        fleet.write("stacks/mqtt/compose.yaml", broker_on_port(taken_port, HEALTHY_1S))
        bad = fleet.commit("publish the broker on a port something else holds")
        result = apply_once(fleet, engine, state, settle=0.5)
        assert result.outcome == "rolled-back", result.reason
        assert f"revision {bad} failed: start mqtt/broker failed:" in result.reason
        after = managed(docker_client, fleet.device)
        assert sorted(after) == sorted(before)  # one per service, no temporary names left
        broker = f"{fleet.device}_mqtt_broker"
        assert after[broker][1] == "running"
        assert after[broker][2] == before[broker][2]  # the good config hash
        assert after[f"{fleet.device}_app_web"][0] == before[f"{fleet.device}_app_web"][0]
        record = StateStore(state, fleet.device).load()
        assert [f.revision for f in record.failed] == [bad]
        assert record.last_good is not None and record.last_good.revision == good
        again = apply_once(fleet, engine, state, settle=0.5)
        assert again.outcome == "failed-no-change", again.reason
        assert managed(docker_client, fleet.device) == after
        volumes = docker_client.volumes.list(
            filters={"label": f"io.fleetgate.device={fleet.device}"}
        )
        assert volumes, "the app's named volume survived"
