"""Crash safety: `apply` killed by SIGKILL at every named point, then run again, converges.

Each test applies revision 1, then runs `python -m reconciler apply` toward revision 2
with ``FLEETGATE_CRASH_AT`` set, so the process dies at that point like a power cut.
A normal second run must end in the correct state: exactly the desired containers,
running the desired configuration, no orphan and no duplicate.

Revision 2 changes a config file (app/web is recreated and a config materialized),
a variable, and the broker image to one only the loopback registry has (a pull).
"""

from __future__ import annotations

import signal
from pathlib import Path

import docker
import pytest
from support.cliproc import fleetgate, target
from support.crash import ROLLBACK_POINTS, UPDATE_POINTS
from support.engine import ImageBuilder
from support.passes import FleetRepo
from support.registry import Registry

from reconciler.manifests.tree import RepoTree
from reconciler.render.desired import build_desired

pytestmark = pytest.mark.docker

"""Crash points only a failing update reaches."""


def desired_hashes(fleet: FleetRepo, state: Path) -> dict[str, str]:
    """container name -> config hash the revision at HEAD wants."""
    desired = build_desired(RepoTree(fleet.path), fleet.head, fleet.device, str(state))
    return {s.container_name: s.config_hash for s in desired.services}


def engine_view(client: docker.DockerClient, device: str) -> dict[str, tuple[str, str]]:
    """name -> (status, config hash) of every container named for or labelled with ``device``."""
    named = client.containers.list(all=True, filters={"name": f"{device}_"})
    labelled = client.containers.list(all=True, filters={"label": f"io.fleetgate.device={device}"})
    seen = {c.id: c for c in (*named, *labelled)}
    return {c.name: (c.status, c.labels.get("io.fleetgate.config-hash", "")) for c in seen.values()}


def networks_of(client: docker.DockerClient, device: str) -> set[str]:
    return {
        n.name for n in client.networks.list(filters={"label": f"io.fleetgate.device={device}"})
    }


def pullable(registry: Registry, client: docker.DockerClient, image: str, name: str) -> str:
    """Push ``image`` to the registry as ``name`` and drop the local tag, so using it pulls."""
    ref = registry.push(image, name)
    client.images.remove(ref)
    return ref


@pytest.fixture
def fleet(tmp_path: Path, device_id: str, busybox_image: str) -> FleetRepo:
    return FleetRepo(
        tmp_path / "fleet", device_id, APP_IMAGE=busybox_image, BROKER_IMAGE=busybox_image
    )


class TestCrashDuringUpdate:
    """A crash anywhere in an update is recovered by the next run."""

    @pytest.mark.parametrize("point", UPDATE_POINTS)
    def test_next_run_converges_without_orphans(
        self,
        point: str,
        fleet: FleetRepo,
        tmp_path: Path,
        docker_client: docker.DockerClient,
        registry: Registry,
    ) -> None:
        """After SIGKILL at the point, a normal run ends with exactly the desired containers."""
        state = tmp_path / "state"
        assert fleetgate("apply", *target(fleet, state)).returncode == 0
        broker = pullable(registry, docker_client, fleet.variables["BROKER_IMAGE"],
                          f"{fleet.device}/broker:2")  # fmt: skip
        fleet.write("stacks/app/app.conf", "mode=production\nrevision=2\n")
        fleet.commit("revision 2", BROKER_IMAGE=broker, GREETING="rev2")

        crashed = fleetgate("apply", *target(fleet, state), env={"FLEETGATE_CRASH_AT": point})
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]

        recovered = fleetgate("apply", *target(fleet, state))
        assert recovered.returncode == 0, recovered.stdout + recovered.stderr[-2000:]
        assert recovered.stdout.splitlines()[-1].startswith("succeeded:")
        want = desired_hashes(fleet, state)
        assert engine_view(docker_client, fleet.device) == {
            name: ("running", digest) for name, digest in want.items()
        }
        assert networks_of(docker_client, fleet.device) == {
            f"{fleet.device}_app_default",
            f"{fleet.device}_mqtt_bus",
        }
        again = fleetgate("apply", *target(fleet, state))
        assert again.stdout.splitlines()[-1] == "succeeded: already converged; nothing to do"


class TestCrashDuringRollback:
    """A crash between recording a failure and rolling back is finished by the next run."""

    def test_interrupted_rollback_is_completed(
        self,
        fleet: FleetRepo,
        tmp_path: Path,
        docker_client: docker.DockerClient,
        image_builder: ImageBuilder,
    ) -> None:
        """The next run sees the failed revision and restores the last good state."""
        crash = image_builder.build("crash", 'FROM {base}\nENTRYPOINT ["sh", "-c", "exit 3"]\n')
        state = tmp_path / "state"
        assert fleetgate("apply", *target(fleet, state)).returncode == 0
        good = desired_hashes(fleet, state)
        bad = fleet.commit("bad broker", BROKER_IMAGE=crash)
        crashed = fleetgate(
            "apply",
            *target(fleet, state),
            env={"FLEETGATE_CRASH_AT": ROLLBACK_POINTS[0]},
        )
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
        recovered = fleetgate("apply", *target(fleet, state))
        assert recovered.returncode == 1
        last = recovered.stdout.splitlines()[-1]
        assert last.startswith(f"rolled-back: revision {bad} failed health before")
        assert engine_view(docker_client, fleet.device) == {
            name: ("running", digest) for name, digest in good.items()
        }
