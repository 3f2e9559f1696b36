"""Seed, then persist, on the real engine: what the app writes into a seeded directory
survives an update, a crash (SIGKILL of `apply` mid-update) and a rollback.

The app (busybox) rewrites its seeded ``configuration.yaml`` on first start only and
appends a line to ``database.db`` at every start, like Zigbee2MQTT with its coordinator
backup. Each revision recreates the container (a changed variable).
"""

from __future__ import annotations

import signal
from pathlib import Path

import docker
import pytest
from support.cliproc import fleetgate, target
from support.engine import ImageBuilder
from support.passes import FleetRepo

pytestmark = pytest.mark.docker

COMPOSE = """\
services:
  z2m:
    image: ${APP_IMAGE}
    command:
      - sh
      - -c
      - |
        [ -e /app/data/.started ] || echo 'written by the app' > /app/data/configuration.yaml
        touch /app/data/.started
        echo "start $$GREETING" >> /app/data/database.db
        exec sleep 3600
    environment: {GREETING: "${GREETING}"}
    init: true
    stop_grace_period: 1s
    volumes: ["./data:/app/data"]
    healthcheck:
      test: ["CMD", "test", "-e", "/app/data/.started"]
      interval: 1s
      timeout: 10s
      retries: 10
"""


@pytest.fixture
def fleet(tmp_path: Path, device_id: str, busybox_image: str) -> FleetRepo:
    repo = FleetRepo(tmp_path / "fleet", device_id, APP_IMAGE=busybox_image)
    repo.write("stacks/z2m/compose.yaml", COMPOSE)
    repo.write("stacks/z2m/stack.yaml", "seed: [data]\n")
    repo.write("stacks/z2m/data/configuration.yaml", "seed: 1\n")
    repo.set_stacks("z2m")
    repo.commit("z2m with a seeded data directory")
    return repo


def apply(fleet: FleetRepo, state: Path, **env: str) -> tuple[int, str]:
    done = fleetgate("apply", *target(fleet, state), env=env)
    return done.returncode, done.stdout + done.stderr[-3000:]


class TestSeededDirectoryOnTheEngine:
    def test_runtime_state_survives_update_crash_and_rollback(
        self,
        fleet: FleetRepo,
        tmp_path: Path,
        docker_client: docker.DockerClient,
        image_builder: ImageBuilder,
    ) -> None:
        """Seeded once; what the app wrote stays through an update, a kill -9 and a rollback."""
        state = tmp_path / "state"
        data = state / "data" / fleet.device / "z2m" / "data"
        code, out = apply(fleet, state)
        assert code == 0, out
        assert (data / "configuration.yaml").read_text() == "written by the app\n"
        assert (data / "database.db").read_text() == "start hello\n"

        # an update whose seed changed and gained a file: the app's copy is kept
        fleet.write("stacks/z2m/data/configuration.yaml", "seed: 2\n")
        fleet.write("stacks/z2m/data/devices.yaml", "new: seed\n")
        fleet.commit("revision 2", GREETING="rev2")
        code, out = apply(fleet, state)
        assert code == 0, out
        assert "seed stacks/z2m/data/devices.yaml" in out  # the new seed file only
        assert "seed stacks/z2m/data/configuration.yaml" not in out
        assert (data / "configuration.yaml").read_text() == "written by the app\n"
        assert (data / "devices.yaml").read_text() == "new: seed\n"
        assert (data / "database.db").read_text() == "start hello\nstart rev2\n"

        # the app changes a seeded file; apply is killed after stopping the old container
        (data / "devices.yaml").write_text("paired: 3\n")
        fleet.commit("revision 3", GREETING="rev3")
        crashed = fleetgate(
            "apply", *target(fleet, state), env={"FLEETGATE_CRASH_AT": "after-stop"}
        )
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
        code, out = apply(fleet, state)
        assert code == 0, out
        assert (data / "devices.yaml").read_text() == "paired: 3\n"
        assert (data / "database.db").read_text().splitlines()[-1] == "start rev3"

        # a revision that fails its health gate rolls back; the data stays
        crash = image_builder.build("crash", 'FROM {base}\nENTRYPOINT ["sh", "-c", "exit 3"]\n')
        fleet.commit("bad image", APP_IMAGE=crash)
        code, out = apply(fleet, state)
        assert code != 0 and "rolled-back" in out, out
        assert (data / "configuration.yaml").read_text() == "written by the app\n"
        assert (data / "devices.yaml").read_text() == "paired: 3\n"
        lines = (data / "database.db").read_text().splitlines()
        assert lines[:2] == ["start hello", "start rev2"] and lines[-1] == "start rev3"
        running = docker_client.containers.list(
            filters={"label": f"io.fleetgate.device={fleet.device}"}
        )
        assert [c.labels["io.fleetgate.service"] for c in running] == ["z2m"]
