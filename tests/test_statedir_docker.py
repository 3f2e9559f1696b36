"""Against the real engine: a link a container planted in its data directory never
reaches a bind mount (safety rule 9), and nothing running is stopped for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from support.engine import DEVICE_LABEL
from support.hostile import write_files
from support.wait import wait_for

from reconciler.engine.docker import DockerEngine
from reconciler.errors import PlantedLink
from reconciler.model import Mount, ServiceSpec
from reconciler.store import StateStore

WRITER = """\
  writer:
    image: {image}
    init: true
    stop_grace_period: 1s
    command: ["sh", "-c", "ln -sfn {host} /data/sub; exec sleep 3600"]
    environment: {{GENERATION: "{generation}"}}
    volumes:
      - ./data:/data
"""
READER = """\
  reader:
    image: {image}
    init: true
    command: ["sleep", "3600"]
    volumes:
      - ./data/sub:/x
"""


def fleetgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        env={**os.environ, "NO_COLOR": "1"},
    )


def containers(client: docker.DockerClient, device: str) -> dict[str, dict[str, object]]:
    """Service name -> inspect attributes of every container of ``device``."""
    found = client.containers.list(all=True, filters={"label": f"{DEVICE_LABEL}={device}"})
    return {c.labels["io.fleetgate.service"]: c.attrs for c in found}


def bind_sources(client: docker.DockerClient, device: str) -> list[str]:
    return [
        str(m["Source"])
        for attrs in containers(client, device).values()
        for m in attrs["Mounts"]  # type: ignore[attr-defined]
        if m["Type"] == "bind"
    ]


@pytest.mark.docker
class TestPlantedDataLink:
    def test_a_later_revision_never_mounts_what_a_container_planted(
        self,
        tmp_path: Path,
        device_id: str,
        busybox_image: str,
        docker_client: docker.DockerClient,
    ) -> None:
        """Revision 2 mounting a path a container linked to the host is refused; rev 1 runs on."""
        repo, state, host = tmp_path / "repo", tmp_path / "state", tmp_path / "host"
        host.mkdir()
        (host / "canary").write_text("host only\n")
        args = ("apply", "--device", device_id, "--repo", str(repo), "--state-dir", str(state))
        compose = "services:\n" + WRITER.format(image=busybox_image, host=host, generation=1)
        write_files(repo, {f"devices/{device_id}.yaml": "stacks: [app]\n"})
        write_files(repo, {"stacks/app/compose.yaml": compose})
        first = fleetgate(*args)
        assert first.returncode == 0, first.stdout + first.stderr
        planted = state / f"data/{device_id}/app/data/sub"
        wait_for(planted.is_symlink, what="the writer container to plant its link")
        writer = containers(docker_client, device_id)["writer"]

        compose = (
            "services:\n"
            + READER.format(image=busybox_image)
            + WRITER.format(image=busybox_image, host=host, generation=2)
        )
        write_files(repo, {"stacks/app/compose.yaml": compose})
        second = fleetgate(*args)

        reason = (
            f"data directory {planted} of app/reader is a symlink (-> {host}) "
            "that a container planted; remove it"
        )
        assert second.returncode == 1, second.stdout
        assert reason in second.stdout.splitlines()[-1]
        assert "Traceback" not in second.stderr
        assert reason in StateStore(state, device_id).load().last_reason
        now = containers(docker_client, device_id)
        assert set(now) == {"writer"}  # the reader was never created
        assert now["writer"]["Id"] == writer["Id"]  # the old writer was not replaced...
        assert now["writer"]["State"]["Running"]  # type: ignore[index]  # ...nor stopped
        inside = str(state.resolve()) + "/"
        assert [s for s in bind_sources(docker_client, device_id) if not s.startswith(inside)] == []
        seen = docker_client.containers.get(str(writer["Id"])).exec_run(["cat", "/data/sub/canary"])
        assert seen.exit_code != 0 and b"host only" not in seen.output

    def test_the_engine_refuses_a_linked_bind_source_at_create(
        self, tmp_path: Path, device_id: str, busybox_image: str, test_labels: dict[str, str]
    ) -> None:
        """A link planted after planning still never reaches the engine: create refuses it."""
        state, host = tmp_path / "state", tmp_path / "host"
        host.mkdir()
        source = state / f"data/{device_id}/app/data"
        source.parent.mkdir(parents=True)
        source.symlink_to(host)
        spec = ServiceSpec(
            device_id,
            "app",
            "web",
            f"{device_id}-app-web",
            busybox_image,
            command=("sleep", "3600"),
            labels=tuple(test_labels.items()),
            mounts=(Mount("data", str(source), "/data"),),
        )
        engine = DockerEngine()
        try:
            with pytest.raises(PlantedLink, match="of app/web is a symlink"):
                engine.create_container(spec, "a" * 40)
            assert engine.inspect_container(spec.container_name) is None
        finally:
            engine.close()

    def test_the_engine_refuses_to_restart_over_a_link_planted_later(
        self, tmp_path: Path, device_id: str, busybox_image: str, test_labels: dict[str, str]
    ) -> None:
        """The engine resolves binds at every start: a source linked after create is refused."""
        state, host = tmp_path / "state", tmp_path / "host"
        host.mkdir()
        (host / "canary").write_text("host only\n")
        source = state / f"data/{device_id}/app/data"
        source.mkdir(parents=True)
        spec = ServiceSpec(
            device_id,
            "app",
            "web",
            f"{device_id}-app-web",
            busybox_image,
            command=("cat", "/data/canary"),
            labels=tuple(test_labels.items()),
            mounts=(Mount("data", str(source), "/data"),),
        )
        engine = DockerEngine()
        try:
            created = engine.create_container(spec, "a" * 40)
            source.rmdir()
            source.symlink_to(host)  # what a container sharing data/ could do meanwhile
            with pytest.raises(PlantedLink, match="of app/web is a symlink"):
                engine.start_container(created)
            seen = engine.inspect_container(created)
            assert seen is not None and seen.state == "created"
        finally:
            engine.close()
