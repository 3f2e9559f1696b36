"""Engine faults on a private ``dockerd`` (tests/support/dockerd.py), never the shared one.

Each case asserts what the device ends up running (one container per service, the right
config hash, no temporary names), what the pass says, and that the data survived (the
app's data directory file and its named volume).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from support.cliproc import fleetgate, target
from support.dockerd import Dockerd, private_engine
from support.engine import BUSYBOX_PATH
from support.enginepass import apply_once, managed
from support.passes import FleetRepo

from reconciler.engine.docker import DockerEngine
from reconciler.plan.steps import TEMP_MARK
from reconciler.store import StateStore

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def dockerd(docker_client: docker.DockerClient, busybox_image: str) -> Iterator[Dockerd]:
    with private_engine(docker_client, busybox_image) as engine:
        yield engine


@pytest.fixture
def fleet(tmp_path: Path, device_id: str, busybox_image: str) -> FleetRepo:
    return FleetRepo(
        tmp_path / "fleet", device_id, APP_IMAGE=busybox_image, BROKER_IMAGE=busybox_image
    )


@pytest.fixture
def up(dockerd: Dockerd) -> Iterator[Dockerd]:
    """The private engine, running at the start and the end of the test."""
    if not dockerd.answers():
        dockerd.start()
    yield dockerd
    if not dockerd.answers():
        dockerd.start()


class KillingEngine(DockerEngine):
    """The real adapter; the private engine is SIGKILLed just before the named operation."""

    def __init__(self, dockerd: Dockerd, at: str) -> None:
        super().__init__(dockerd.host, timeout=10)
        self.dockerd, self.at = dockerd, at

    def _maybe_kill(self, op: str) -> None:
        if op == self.at:
            self.at = ""
            self.dockerd.kill()

    def stop_container(self, container_id: str, timeout: float | None) -> None:
        self._maybe_kill("stop")
        super().stop_container(container_id, timeout)

    def rename_container(self, container: str, new_name: str) -> None:
        self._maybe_kill("rename")
        super().rename_container(container, new_name)


def apply(fleet: FleetRepo, engine: DockerEngine, state: Path) -> str:
    return apply_once(fleet, engine, state, settle=0.5).outcome


def check_end_state(dockerd: Dockerd, fleet: FleetRepo, state: Path, greeting: str) -> None:
    """One running container per service, no temporary names, the data directory intact."""
    with contextlib.closing(dockerd.client()) as client:
        found = managed(client, fleet.device)
        env = client.containers.get(f"{fleet.device}_mqtt_broker").attrs["Config"]["Env"]
        volumes = client.volumes.list(filters={"label": f"io.fleetgate.device={fleet.device}"})
    assert sorted(found) == [f"{fleet.device}_app_web", f"{fleet.device}_mqtt_broker"]
    assert all(TEMP_MARK not in name for name in found)
    assert {status for _, status, _ in found.values()} == {"running"}
    assert f"GREETING={greeting}" in env
    assert volumes, "named volume lost"
    assert (state / "data" / fleet.device / "app" / "state" / "keep").read_text() == "plant"


def seed(dockerd: Dockerd, fleet: FleetRepo, state: Path) -> None:
    """Converge the first revision and put a file in the app's data directory."""
    with contextlib.closing(DockerEngine(dockerd.host)) as engine:
        assert apply(fleet, engine, state) == "succeeded"
    (state / "data" / fleet.device / "app" / "state" / "keep").write_text("plant")


class TestEngineRestarts:
    def test_engine_down_when_the_pass_starts_is_retried_not_failed(
        self, up: Dockerd, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """No engine: the pass fails with one line, records no failed revision; later converges."""
        state = tmp_path / "state"
        seed(up, fleet, state)
        fleet.commit(GREETING="servus")
        up.kill()
        with contextlib.closing(DockerEngine(up.host, timeout=5)) as engine:
            result = apply_once(fleet, engine, state, settle=0.5)
        assert result.outcome == "failed", result.reason
        assert "\n" not in result.reason
        assert StateStore(state, fleet.device).load().failed == ()
        up.start()
        with contextlib.closing(DockerEngine(up.host)) as engine:
            assert apply(fleet, engine, state) == "succeeded"
        check_end_state(up, fleet, state, "servus")

    @pytest.mark.parametrize("at", ["stop", "rename"])
    def test_engine_killed_mid_update_converges_after_restart(
        self, up: Dockerd, fleet: FleetRepo, tmp_path: Path, at: str
    ) -> None:
        """Killed before stopping the old container (retryable) or mid-swap (rolled back)."""
        state = tmp_path / "state"
        seed(up, fleet, state)
        bad = fleet.commit(GREETING="servus")
        with contextlib.closing(KillingEngine(up, at)) as engine:
            outcome = apply(fleet, engine, state)
        assert outcome == "failed"  # mid-swap the rollback cannot reach the engine either
        up.start()
        with contextlib.closing(DockerEngine(up.host)) as engine:
            second = apply(fleet, engine, state)
        # Before any change the update is simply retried; mid-swap it is a failed release
        # and the device returns to its last good revision (the revision is remembered).
        failed = [f.revision for f in StateStore(state, fleet.device).load().failed]
        if at == "stop":
            assert (second, failed) == ("succeeded", [])
            check_end_state(up, fleet, state, "servus")
        else:
            assert (second, failed) == ("rolled-back", [bad])
            check_end_state(up, fleet, state, "hello")

    def test_engine_restarted_while_idle_is_repaired(
        self, up: Dockerd, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """After dockerd is killed and started while idle, the next pass runs everything again."""
        state = tmp_path / "state"
        seed(up, fleet, state)
        up.power_cut()
        up.start()
        with contextlib.closing(DockerEngine(up.host)) as engine:
            assert apply(fleet, engine, state) == "succeeded"
        check_end_state(up, fleet, state, "hello")

    def test_agent_killed_with_the_engine_power_cut_converges(
        self, up: Dockerd, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """kill -9 of fleetgate mid-update together with the engine: the next run converges."""
        state = tmp_path / "state"
        seed(up, fleet, state)
        fleet.commit(GREETING="servus")
        env = {"DOCKER_HOST": up.host, "FLEETGATE_CRASH_AT": "after-create"}
        crashed = fleetgate("apply", *target(fleet, state), env=env)
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-1500:]
        up.power_cut()
        up.start()
        again = fleetgate("apply", *target(fleet, state), env={"DOCKER_HOST": up.host})
        assert again.returncode == 0, again.stdout[-1500:] + again.stderr[-1500:]
        check_end_state(up, fleet, state, "servus")


def stale_task(dockerd: Dockerd, container_id: str, rootfs: Path) -> None:
    """Leave containerd a task under ``container_id`` that dockerd never saw start, as an
    engine killed mid-start does: dockerd is frozen (SIGSTOP) while ``ctr run`` starts a
    busybox ``sleep`` under that id, then killed with its containerd and started again.

    The container must have exited first (dockerd has then dropped its containerd objects).
    """
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX_PATH, rootfs / "bin" / "busybox")
    sock = dockerd.root / "exec" / "containerd" / "containerd.sock"
    ctr = [shutil.which("ctr") or "ctr", "-a", str(sock), "-n", "moby", "run", "-d"]
    assert dockerd.proc is not None
    os.kill(dockerd.proc.pid, signal.SIGSTOP)
    made = subprocess.run(
        [*ctr, "--rootfs", str(rootfs), container_id, "/bin/busybox", "sleep", "600"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    dockerd.kill()
    assert made.returncode == 0, made.stderr
    dockerd.start()


class TestHalfStartedContainer:
    def test_a_container_the_engine_cannot_start_again_is_created_anew(
        self, up: Dockerd, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """A task left in containerd by a crash ("already exists"/"id already in use"): the
        pass fails in one line and removes the container; the next one creates it anew."""
        state = tmp_path / "state"
        seed(up, fleet, state)
        with contextlib.closing(up.client()) as client:
            broker = client.containers.get(f"{fleet.device}_mqtt_broker")
            broker.kill()  # exit code 137: a crash, to be started again
            broker.wait(timeout=30)
            stale_task(up, broker.id or "", tmp_path / "rootfs")
        with contextlib.closing(DockerEngine(up.host)) as engine:
            first = apply_once(fleet, engine, state, settle=0.5)
            assert first.outcome == "failed", first.reason
            assert "already" in first.reason and "\n" not in first.reason
            assert apply(fleet, engine, state) == "succeeded"
        check_end_state(up, fleet, state, "hello")
