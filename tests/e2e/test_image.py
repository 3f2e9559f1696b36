"""The agent image built by ``scripts/image``, run the way docs/install.md says.

The host image is built once per session (the debootstrap base is cached in
``FLEETGATE_IMAGE_CACHE``, default /var/cache/fleetgate-image, so only the first run on
a machine pays for it). The agent container gets the Docker socket, its state
directory bind-mounted at the same path, its configuration read-only and the host
network (the git daemon listens on 127.0.0.1); the test waits on the published
``status.json`` and on the engine.
The ARM images are built the same way (their base without emulating debootstrap's
second stage) and must run the agent under qemu-user-static; the fixture registers
binfmt_misc itself (it needs root, as CI has) and skips only where that is impossible.
"""

from __future__ import annotations

import contextlib
import errno
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


ARM = {"linux/arm64": ("arm64", "aarch64"), "linux/arm/v7": ("armv7", "armv7l")}
ARM_NAME = "fleetgate-test/agent-arm"  # not fleetgate:*: the test removes what it built


@pytest.fixture(scope="session")
def binfmt() -> None:
    """qemu-user-static registered in binfmt_misc (done here when it is not: needs root).
    Where binfmt_misc cannot be mounted or written (no root, a locked-down container)
    no ARM binary can run on this machine: the ARM tests are skipped with that reason."""
    subprocess.run(
        [
            "sh",
            "-c",
            "command -v qemu-aarch64-static >/dev/null || "
            "apt-get install -y -qq --no-install-recommends qemu-user-static",
        ],
        check=True,
        timeout=600,
    )
    register = Path("/proc/sys/fs/binfmt_misc/register")
    try:
        if not register.exists():
            subprocess.run(
                ["mount", "-t", "binfmt_misc", "binfmt_misc", str(register.parent)],
                check=True,
                capture_output=True,
                timeout=30,
            )
        for name in ("aarch64", "arm"):
            if not (register.parent / f"qemu-{name}").exists():
                line = Path(f"/usr/lib/binfmt.d/qemu-{name}.conf").read_text().strip()
                with contextlib.suppress(FileExistsError):  # registered under another name
                    register.write_text(line)
    except (OSError, subprocess.CalledProcessError) as e:
        if isinstance(e, OSError) and e.errno not in {errno.EACCES, errno.EPERM, errno.EROFS}:
            raise  # not a locked-down kernel interface: a broken qemu-user-static install
        detail = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) else e
        pytest.skip(f"qemu cannot be registered in binfmt_misc here ({detail!s}): ARM needs it")


@pytest.fixture(scope="class")
def arm_images(binfmt: None, docker_client: docker.DockerClient) -> Iterator[dict[str, str]]:
    """Both ARM images, built fresh by one scripts/image run (from a cached base when
    FLEETGATE_IMAGE_CACHE has one); removed afterwards."""
    proc = subprocess.run(
        [
            str(ROOT / "scripts" / "image"),
            *(a for platform in ARM for a in ("--platform", platform)),
            "--name",
            ARM_NAME,
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    print(f"\nscripts/image:\n{proc.stderr[-2000:]}{proc.stdout}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    tags = {p: f"{ARM_NAME}:{VERSION}-{suffix}" for p, (suffix, _) in ARM.items()}
    yield tags
    for tag in tags.values():
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(tag)


class TestArmImages:
    """The ARM images are built from the same recipe and run on ARM (here: emulated).
    Their base is debootstrap's first stage finished on the host (scripts/image_foreign.py),
    so it is made in about a minute of CPU instead of 19-26 min of emulated second stage."""

    @pytest.mark.parametrize("platform", sorted(ARM))
    def test_arm_image_runs_the_agent(
        self, arm_images: dict[str, str], docker_client: docker.DockerClient, platform: str
    ) -> None:
        """On an ARM CPU (uname -m), the image answers ``fleetgate --version`` and
        ``agent --help``, validates the example fleet, runs git, and its dpkg database
        audits clean."""
        script = (
            "uname -m; fleetgate --version; fleetgate agent --help >/dev/null && echo agent; "
            "fleetgate validate --repo /fleet 2>&1; git --version; dpkg --audit"
        )
        out = docker_client.containers.run(
            arm_images[platform],
            entrypoint=["sh", "-c", script],
            volumes={str(ROOT / "example-fleet-repo"): {"bind": "/fleet", "mode": "ro"}},
            remove=True,
        )
        lines = out.decode().splitlines()
        assert lines[0] == ARM[platform][1]
        assert lines[1:3] == [f"fleetgate {VERSION}", "agent"]
        assert lines[3].startswith("fleet valid: ")
        assert lines[4].startswith("git version 2.")
        assert lines[5:] == []  # dpkg --audit: nothing half-installed
