"""The agent image built by ``scripts/image``, run the way docs/install.md says.

The host image is built once per session (the debootstrap base is cached in
``FLEETGATE_IMAGE_CACHE``, default /var/cache/fleetgate-image, so only the first run on
a machine pays for it). The agent container gets the Docker socket, its state
directory bind-mounted at the same path, its configuration read-only and the host
network (the git daemon listens on 127.0.0.1); the test waits on the published
``status.json`` and on the engine.
The ARM images are tested in ``test_image_arm.py``: a file of their own, so that a
parallel run builds them on another worker while this one builds the host image.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from support.gitserver import GitDaemon
from support.registry import Registry
from support.wait import wait_for

from e2e.agentproc import Fleet, managed

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
LIST_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
FORBIDDEN = ("pip", "gcc", "cc", "make")  # the image carries no installer and no compiler


def build(*args: str) -> str:
    """Run scripts/image; its summary line (tag, platform, size, seconds)."""
    proc = subprocess.run(
        [str(ROOT / "scripts" / "image"), *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def agent_image(docker_client: docker.DockerClient) -> str:
    line = build()
    print(f"\nscripts/image: {line}")
    tag = f"fleetgate:{VERSION}"
    assert line.startswith(tag + "\t")
    return tag


@pytest.fixture
def agent_container(
    tmp_path: Path, docker_client: docker.DockerClient, device_id: str
) -> Iterator[list[Any]]:
    """Containers the test starts; every one is removed afterwards (logs printed).

    It asks for ``device_id`` so that the agent is removed *before* the device's
    objects are: an agent still running after that cleanup re-created its network."""
    started: list[Any] = []
    yield started
    for container in started:
        with contextlib.suppress(docker.errors.NotFound):
            print(container.logs(tail=15).decode(errors="replace"))
            container.remove(force=True)


def status(state: Path, device: str) -> dict[str, Any]:
    with contextlib.suppress(FileNotFoundError, ValueError):
        data: dict[str, Any] = json.loads((state / "devices" / device / "status.json").read_text())
        return data
    return {}


class TestAgentImage:
    """The built image is the agent a device runs."""

    def test_image_converges_a_device_from_a_git_daemon(  # noqa: PLR0917  # pytest fixtures
        self,
        agent_image: str,
        agent_container: list[Any],
        fleet: Fleet,
        daemon: GitDaemon,
        tmp_path: Path,
        docker_client: docker.DockerClient,
        test_labels: dict[str, str],
    ) -> None:
        """The image, run with the socket, the state dir at the same path and host
        networking, converges the device to the served commit and then to a pushed one."""
        state = tmp_path / "state"
        state.mkdir()
        etc = tmp_path / "etc"
        etc.mkdir()
        (etc / "agent.yaml").write_text(
            yaml.safe_dump(
                {
                    "device": fleet.device,
                    "repo": daemon.url(fleet.name),
                    "stateDir": str(state),
                    "pollInterval": "1s",
                    "maxBackoff": "3s",
                    "statusListen": "127.0.0.1:0",
                }
            )
        )
        container = docker_client.containers.run(
            agent_image,
            detach=True,
            network_mode="host",
            labels=test_labels,
            volumes={
                "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                str(state): {"bind": str(state), "mode": "rw"},
                str(etc): {"bind": "/etc/fleetgate", "mode": "ro"},
            },
        )
        agent_container.append(container)

        def converged(revision: str) -> bool:
            container.reload()
            assert container.status != "exited", container.logs(tail=20).decode(errors="replace")
            now = status(state, fleet.device)
            return now.get("outcome") == "succeeded" and now.get("applied_revision") == revision

        wait_for(lambda: converged(fleet.head), timeout=120, what="first convergence in the image")
        web = managed(docker_client, fleet.device)[f"{fleet.device}_app_web"]
        assert web[1:] == ("running", "one")
        head = fleet.commit(greeting="two")
        wait_for(lambda: converged(head), timeout=90, what="the pushed commit in the image")
        assert managed(docker_client, fleet.device)[f"{fleet.device}_app_web"][1:] == (
            "running",
            "two",
        )

    def test_image_has_no_installer_and_no_compiler(
        self, agent_image: str, docker_client: docker.DockerClient
    ) -> None:
        """Neither pip (as a command or a module) nor a compiler is in the image."""
        script = "; ".join(f"command -v {tool} && exit 1" for tool in FORBIDDEN)
        script += "; python3 -c 'import pip' 2>/dev/null && exit 2; fleetgate --version"
        out = docker_client.containers.run(
            agent_image, entrypoint=["sh", "-c", script], remove=True
        )
        assert out.decode().strip() == f"fleetgate {VERSION}"


class TestPush:
    """``--push`` publishes one multi-arch tag to a registry."""

    def test_push_puts_a_manifest_list_that_pulls(
        self, agent_image: str, registry: Registry, docker_client: docker.DockerClient
    ) -> None:
        """``REGISTRY/fleetgate:<version>`` is a manifest list naming each platform's
        manifest, and pulling it gives the image that was built."""
        build("--platform", "linux/amd64", "--push", registry.address)
        pushed = registry.ref(f"fleetgate:{VERSION}")
        try:
            request = urllib.request.Request(
                f"http://{registry.address}/v2/fleetgate/manifests/{VERSION}",
                headers={"Accept": LIST_TYPE},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                index = json.loads(response.read())
            assert index["mediaType"] == LIST_TYPE
            assert [m["platform"] for m in index["manifests"]] == [
                {"os": "linux", "architecture": "amd64"}
            ]
            pulled = docker_client.images.pull(pushed)
            assert pulled.id == docker_client.images.get(agent_image).id
        finally:
            for tag in (pushed, registry.ref(f"fleetgate:{VERSION}-amd64")):
                with contextlib.suppress(docker.errors.ImageNotFound):
                    docker_client.images.remove(tag)
