"""The planner's observation (``observe(device, brief=True)``) against the real engine.

Engine API calls are counted with the docker SDK's own hook (``APIClient`` is a
``requests.Session``: every response passes ``hooks["response"]``), so nothing of
fleetgate's is replaced.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.engine import ImageBuilder
from support.wait import wait_for

from reconciler.engine.docker import DockerEngine
from reconciler.engine.docker_socket import SocketEngine
from reconciler.errors import EngineError
from reconciler.model import Healthcheck, ServiceSpec

pytestmark = pytest.mark.docker


def make_spec(device: str, image: str, labels: dict[str, str], **fields: Any) -> ServiceSpec:
    """A sleeping service ``fields["service"]`` (default ``app``) of stack ``edge``."""
    service = fields.pop("service", "app")
    return ServiceSpec(
        device=device,
        stack="edge",
        service=service,
        container_name=f"{device}_edge_{service}",
        image=image,
        command=("sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"),
        init=True,
        labels=tuple(sorted(labels.items())),
        config_hash="hash-1",
        field_hashes=(("image", "aa"),),
        **fields,
    )


def counted(engine: DockerEngine) -> list[str]:
    """The method and path of every Engine API call ``engine`` makes from now on."""
    calls: list[str] = []

    def hook(response: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(f"{response.request.method} {response.request.path_url.split('?')[0]}")

    engine.api.hooks["response"].append(hook)
    return calls


def inspects(calls: list[str]) -> list[str]:
    """The container inspections among ``calls`` (``GET /containers/<id>/json``)."""
    return [c for c in calls if c.startswith("GET") and c.count("/") >= 3 and "/containers/" in c
            and not c.endswith("/containers/json")]  # fmt: skip


class TestBriefObserve:
    def test_running_containers_are_not_inspected(
        self, device_id: str, busybox_image: str, test_labels: dict[str, str]
    ) -> None:
        """Running containers whose labels say all cost no inspect: one list call per kind."""
        engine = DockerEngine()
        for service in ("a", "b", "c"):
            spec = make_spec(device_id, busybox_image, test_labels, service=service)
            engine.start_container(engine.create_container(spec, "r1"))
        full = engine.observe(device_id)
        calls = counted(engine)
        brief = engine.observe(device_id, brief=True)
        assert inspects(calls) == []
        assert len(calls) == 4  # containers, networks, volumes, images
        assert brief.containers == full.containers  # the engine is shared: compare only ours
        engine.observe(device_id)
        assert len(inspects(calls)) == 3  # the full observation still inspects each one

    def test_created_container_is_inspected(
        self, device_id: str, busybox_image: str, test_labels: dict[str, str]
    ) -> None:
        """A container that is not running is inspected (the list has no exit code)."""
        engine = DockerEngine()
        engine.create_container(make_spec(device_id, busybox_image, test_labels), "r1")
        calls = counted(engine)
        brief = engine.observe(device_id, brief=True)
        assert len(inspects(calls)) == 1
        assert brief.containers == engine.observe(device_id).containers

    def test_health_is_read_from_the_list(
        self, device_id: str, busybox_image: str, test_labels: dict[str, str]
    ) -> None:
        """A healthy container is reported healthy by the brief observation, uninspected."""
        engine = DockerEngine()
        spec = make_spec(
            device_id,
            busybox_image,
            test_labels,
            healthcheck=Healthcheck(("CMD", "true"), interval=0.2, retries=1),
        )
        engine.start_container(engine.create_container(spec, "r1"))
        wait_for(
            lambda: engine.observe(device_id).containers[0].health == "healthy",
            timeout=20,
            what="healthy",
        )
        calls = counted(engine)
        [seen] = engine.observe(device_id, brief=True).containers
        assert (seen.health, inspects(calls)) == ("healthy", [])

    def test_moved_tag_is_inspected_for_the_reference(
        self,
        device_id: str,
        image_builder: ImageBuilder,
        test_labels: dict[str, str],
    ) -> None:
        """Once its tag points at another image the list shows an id: the container is inspected."""
        tag = image_builder.build("moving", "FROM {base}\nLABEL step=1\n")
        engine = DockerEngine()
        spec = make_spec(device_id, tag, test_labels)
        engine.start_container(engine.create_container(spec, "r1"))
        image_builder.build("moving", "FROM {base}\nLABEL step=2\n")
        calls = counted(engine)
        [seen] = engine.observe(device_id, brief=True).containers
        assert len(inspects(calls)) == 1
        assert seen.image == tag
        assert seen == engine.observe(device_id).containers[0]


class TestSocketEngine:
    def test_socket_reader_sees_what_the_sdk_sees(
        self, device_id: str, busybox_image: str, test_labels: dict[str, str]
    ) -> None:
        """Over the Unix socket the snapshot is the SDK's: containers, networks and volumes."""
        engine = DockerEngine()
        for service in ("a", "b"):
            spec = make_spec(device_id, busybox_image, test_labels, service=service)
            engine.start_container(engine.create_container(spec, "r1"))
        engine.create_container(make_spec(device_id, busybox_image, test_labels, service="c"), "r1")
        sdk = engine.observe(device_id)
        for brief in (True, False):
            seen = SocketEngine().observe(device_id, brief=brief)
            assert (seen.containers, seen.networks, seen.volumes) == (
                sdk.containers,
                sdk.networks,
                sdk.volumes,
            )

    def test_unreachable_socket_is_the_sdk_one_line_error(self, tmp_path: Path) -> None:
        """A socket that does not answer falls back to the SDK, whose error names the fix."""
        with pytest.raises(EngineError, match="cannot reach the Docker engine"):
            SocketEngine(f"unix://{tmp_path}/none.sock").observe("dev1", brief=True)

    def test_no_change_apply_loads_neither_sdk_nor_validation(
        self, device_id: str, tmp_path: Path
    ) -> None:
        """A second, unchanged apply in a fresh process imports no docker SDK, jsonschema, git."""
        repo = tmp_path / "fleet"
        (repo / "devices").mkdir(parents=True)
        (repo / "devices" / f"{device_id}.yaml").write_text("labels: {site: test}\n")
        argv = [
            "apply",
            "--device",
            device_id,
            "--repo",
            str(repo),
            "--state-dir",
            str(tmp_path / "s"),
        ]
        probe = (
            "import sys\nfrom reconciler.cli import main\n"
            f"code = main({argv!r})\n"
            "tops = {m.split('.')[0] for m in sys.modules}\n"
            "loaded = sorted(tops & {'docker', 'jsonschema', 'git'})\n"
            "print(code, loaded)\n"
        )
        outputs = [
            subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, check=True
            ).stdout.splitlines()[-1]
            for _ in range(2)
        ]
        assert outputs[0].startswith("0 ")  # the first one validates (jsonschema loaded)
        assert outputs[1] == "0 []"
