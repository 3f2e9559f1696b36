"""A registry connection cut mid-layer, and a registry that hangs (shared engine).

A loopback TCP proxy (tests/support/tcpproxy.py) stands in front of the test registry;
the fleet names images through the proxy. Download-then-kill: while a pull fails or
stalls, the running version stays; once the registry answers, the update lands.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from support.engine import ImageBuilder
from support.enginepass import apply_once, managed
from support.passes import FleetRepo
from support.registry import Registry
from support.tcpproxy import TcpProxy

from reconciler.engine.docker import DockerEngine

pytestmark = pytest.mark.docker


@pytest.fixture
def fleet(tmp_path: Path, device_id: str, busybox_image: str) -> FleetRepo:
    return FleetRepo(
        tmp_path / "fleet", device_id, APP_IMAGE=busybox_image, BROKER_IMAGE=busybox_image
    )


@pytest.fixture
def remote_image(
    registry: Registry,
    image_builder: ImageBuilder,
    docker_client: docker.DockerClient,
    device_id: str,
) -> str:
    """An image with its own ~600 KB layer, pushed and then removed locally.

    The layer is copied in (``COPY``): no build container runs, and the random bytes make
    it a layer no other test has, so the pull must download it."""
    local = image_builder.build(
        f"bulk{device_id[-3:]}",
        "FROM {base}\nCOPY bulk /bulk\n",
        {"bulk": os.urandom(600 * 1024)},
    )
    name = f"faults/{device_id}:1"
    registry.push(local, name)
    docker_client.images.remove(local, force=True)
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client.images.remove(registry.ref(name), force=True)
    return name


@pytest.fixture
def proxy(registry: Registry) -> Iterator[TcpProxy]:
    p = TcpProxy(registry.address)
    yield p
    p.close()


def app_image(client: docker.DockerClient, device: str) -> str:
    return str(client.containers.get(f"{device}_app_web").attrs["Config"]["Image"])


class TestRegistryFaults:
    def test_a_stream_cut_mid_layer_keeps_the_old_version_then_updates(
        self,
        fleet: FleetRepo,
        remote_image: str,
        proxy: TcpProxy,
        docker_client: docker.DockerClient,
        tmp_path: Path,
    ) -> None:
        """The cut download is resumed or retried; the update lands, one container each."""
        state = tmp_path / "state"
        with contextlib.closing(DockerEngine()) as engine:
            assert apply_once(fleet, engine, state, settle=0.5).outcome == "succeeded"
            before = managed(docker_client, fleet.device)
            proxy.cut_after = 200_000
            ref = f"{proxy.address}/{remote_image}"
            fleet.commit(APP_IMAGE=ref)
            result = apply_once(fleet, engine, state, settle=0.5)
            if result.outcome != "succeeded":  # the engine gave up: the old version runs
                assert result.outcome == "failed-no-change", result.reason
                assert managed(docker_client, fleet.device) == before
                result = apply_once(fleet, engine, state, settle=0.5)
        assert proxy.cut >= 1, "the stream was never cut"
        assert result.outcome == "succeeded", result.reason
        assert sorted(managed(docker_client, fleet.device)) == sorted(before)
        assert app_image(docker_client, fleet.device) == ref

    def test_a_hanging_registry_keeps_the_old_version(
        self,
        fleet: FleetRepo,
        remote_image: str,
        proxy: TcpProxy,
        docker_client: docker.DockerClient,
        tmp_path: Path,
    ) -> None:
        """A pull that stalls past the engine timeout changes nothing; later it lands."""
        state = tmp_path / "state"
        with contextlib.closing(DockerEngine()) as engine:
            assert apply_once(fleet, engine, state, settle=0.5).outcome == "succeeded"
        before = managed(docker_client, fleet.device)
        proxy.hang = True
        ref = f"{proxy.address}/{remote_image}"
        fleet.commit(APP_IMAGE=ref)
        with contextlib.closing(DockerEngine(timeout=4)) as engine:
            stalled = apply_once(fleet, engine, state, settle=0.5)
        assert stalled.outcome == "failed-no-change", stalled.reason
        assert "\n" not in stalled.reason
        assert managed(docker_client, fleet.device) == before
        proxy.hang = False
        with contextlib.closing(DockerEngine()) as engine:
            done = apply_once(fleet, engine, state, settle=0.5)
        assert done.outcome == "succeeded", done.reason
        assert app_image(docker_client, fleet.device) == ref
