"""DockerEngine against the real engine: observe, create, lifecycle, ownership."""

from __future__ import annotations

from typing import Any

import docker
import pytest
from support.wait import wait_for

from reconciler.engine.docker import DockerEngine
from reconciler.errors import EngineError, NameConflict
from reconciler.model import (
    Healthcheck,
    Mount,
    NetworkAttachment,
    NetworkSpec,
    ServiceSpec,
    VolumeSpec,
)

pytestmark = pytest.mark.docker

SLEEPER = ("sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done")


def make_spec(device: str, image: str, labels: dict[str, str], **fields: Any) -> ServiceSpec:
    """A small service spec for ``device`` carrying the test-run labels."""
    service = fields.pop("service", "app")
    base: dict[str, Any] = {
        "device": device,
        "stack": "edge",
        "service": service,
        "container_name": f"{device}_edge_{service}",
        "image": image,
        "command": SLEEPER,
        "init": True,
        "labels": tuple(sorted(labels.items())),
        "config_hash": "hash-1",
        "field_hashes": (("image", "aa"), ("command", "bb")),
    }
    base.update(fields)
    return ServiceSpec(**base)


@pytest.fixture
def engine() -> DockerEngine:
    return DockerEngine()


class TestObserve:
    def test_created_container_is_observed(
        self, engine: DockerEngine, device_id: str, busybox_image: str, test_labels: dict[str, str]
    ) -> None:
        """A created container shows up with its stack, service, hashes and revision."""
        spec = make_spec(device_id, busybox_image, test_labels)
        cid = engine.create_container(spec, "a" * 40)
        [seen] = engine.observe(device_id).containers
        assert (seen.id, seen.name, seen.stack, seen.service) == (
            cid,
            spec.container_name,
            "edge",
            "app",
        )
        assert (seen.config_hash, seen.field_hashes, seen.revision) == (
            "hash-1",
            (("image", "aa"), ("command", "bb")),
            "a" * 40,
        )
        assert (seen.state, seen.image, seen.exit_code) == ("created", busybox_image, None)
        assert seen.image_id.startswith("sha256:")

    def test_running_healthy_and_exited_states(
        self, engine: DockerEngine, device_id: str, busybox_image: str, test_labels: dict[str, str]
    ) -> None:
        """Observe reports running containers' health and exited containers' exit codes."""
        healthy = make_spec(
            device_id,
            busybox_image,
            test_labels,
            healthcheck=Healthcheck(("CMD", "true"), interval=0.2, retries=1),
        )
        crashing = make_spec(
            device_id, busybox_image, test_labels, service="crash", command=("sh", "-c", "exit 3")
        )
        engine.start_container(engine.create_container(healthy, "r1"))
        engine.start_container(engine.create_container(crashing, "r1"))

        def settled() -> dict[str, Any]:
            by_service = {c.service: c for c in engine.observe(device_id).containers}
            app, crash = by_service["app"], by_service["crash"]
            if app.health == "healthy" and crash.state == "exited":
                return by_service
            return {}

        state = wait_for(settled, timeout=20, what="app healthy and crash exited")
        assert (state["app"].state, state["app"].exit_code) == ("running", None)
        assert state["crash"].exit_code == 3

    def test_unmanaged_container_is_invisible_and_foreign(
        self,
        engine: DockerEngine,
        docker_client: docker.DockerClient,
        device_id: str,
        busybox_image: str,
        test_labels: dict[str, str],
    ) -> None:
        """An unlabelled container named like a managed one is never observed, only named."""
        spec = make_spec(device_id, busybox_image, test_labels)
        docker_client.containers.create(
            busybox_image, name=spec.container_name, labels=test_labels, command=list(SLEEPER)
        )
        observed = engine.observe(device_id)
        assert observed.containers == ()
        assert spec.container_name in observed.foreign_names
        with pytest.raises(NameConflict, match=spec.container_name):
            engine.create_container(spec, "r1")

    def test_other_device_is_not_observed(
        self, engine: DockerEngine, device_id: str, busybox_image: str, test_labels: dict[str, str]
    ) -> None:
        """Containers of another device on the same engine are not this device's."""
        other = f"{device_id}-other"
        spec = make_spec(other, busybox_image, test_labels)
        try:
            engine.create_container(spec, "r1")
            assert engine.observe(device_id).containers == ()
            assert spec.container_name in engine.observe(device_id).foreign_names
            assert len(engine.observe(other).containers) == 1
        finally:
            for c in engine.observe(other).containers:
                engine.remove_container(c.id)

    def test_container_vanishing_between_list_and_inspect_is_skipped(
        self,
        docker_client: docker.DockerClient,
        device_id: str,
        busybox_image: str,
        test_labels: dict[str, str],
    ) -> None:
        """A container removed after the list call is left out of the snapshot, not an error."""

        class RacingEngine(DockerEngine):
            """Removes the container for real right before the adapter inspects it."""

            def inspect_container(self, container_id: str) -> Any:
                docker_client.api.remove_container(container_id, force=True)
                return super().inspect_container(container_id)

        racing = RacingEngine()
        racing.create_container(make_spec(device_id, busybox_image, test_labels), "r1")
        assert racing.observe(device_id).containers == ()
        assert DockerEngine().inspect_container("0" * 64) is None


class TestNetworksAndVolumes:
    def test_networks_and_volumes_are_labelled_and_observed(
        self, engine: DockerEngine, device_id: str, test_labels: dict[str, str]
    ) -> None:
        """Created networks and volumes carry ownership labels and appear in observe."""
        labels = tuple(test_labels.items())
        net = NetworkSpec(f"{device_id}_edge_default", labels=labels)
        vol = VolumeSpec(f"{device_id}_edge_data", labels=labels)
        engine.create_network(device_id, "edge", net)
        engine.create_network(device_id, "edge", net)  # idempotent
        engine.create_volume(device_id, "edge", vol)
        engine.create_volume(device_id, "edge", vol)
        observed = engine.observe(device_id)
        assert [(n.name, n.stack) for n in observed.networks] == [(net.name, "edge")]
        assert [(v.name, v.stack) for v in observed.volumes] == [(vol.name, "edge")]
        engine.remove_network(net.name)
        assert engine.observe(device_id).networks == ()

    def test_foreign_network_and_volume_names_conflict(
        self,
        engine: DockerEngine,
        docker_client: docker.DockerClient,
        device_id: str,
        test_labels: dict[str, str],
    ) -> None:
        """A network or volume with the needed name but no ownership label is never adopted."""
        name = f"{device_id}_edge_taken"
        docker_client.networks.create(name, labels=test_labels)
        docker_client.volumes.create(name, labels=test_labels)
        assert name in engine.observe(device_id).foreign_networks
        with pytest.raises(NameConflict):
            engine.create_network(device_id, "edge", NetworkSpec(name))
        with pytest.raises(NameConflict):
            engine.create_volume(device_id, "edge", VolumeSpec(name))
        with pytest.raises(EngineError, match="not managed"):
            engine.remove_network(name)


class TestLifecycle:
    def test_stop_and_remove_keep_named_volume_data(
        self,
        engine: DockerEngine,
        docker_client: docker.DockerClient,
        device_id: str,
        busybox_image: str,
        test_labels: dict[str, str],
    ) -> None:
        """Stopping and removing a container leaves its named volume and the data in it."""
        vol = VolumeSpec(f"{device_id}_edge_data", labels=tuple(test_labels.items()))
        engine.create_volume(device_id, "edge", vol)
        spec = make_spec(
            device_id,
            busybox_image,
            test_labels,
            command=("sh", "-c", "echo kept > /data/f; trap 'exit 0' TERM; sleep 60 & wait"),
            mounts=(Mount("volume", vol.name, "/data"),),
            stop_grace_period=5.0,
        )
        cid = engine.create_container(spec, "r1")
        engine.start_container(cid)
        wait_for(
            lambda: engine.observe(device_id).containers[0].state == "running",
            what="container running",
        )
        engine.stop_container(cid, spec.stop_grace_period)
        assert engine.inspect_container(cid) is not None
        engine.remove_container(cid)
        engine.remove_container(cid)  # already gone: fine
        assert engine.inspect_container(cid) is None
        assert [v.name for v in engine.observe(device_id).volumes] == [vol.name]
        out = docker_client.containers.run(
            busybox_image,
            ["cat", "/data/f"],
            volumes={vol.name: {"bind": "/data", "mode": "ro"}},
            labels=test_labels,
            remove=True,
        )
        assert out == b"kept\n"

    def test_remove_refuses_unmanaged_container(
        self,
        engine: DockerEngine,
        docker_client: docker.DockerClient,
        busybox_image: str,
        test_labels: dict[str, str],
    ) -> None:
        """remove_container never removes a container without the managed label."""
        foreign = docker_client.containers.create(busybox_image, labels=test_labels)
        try:
            with pytest.raises(EngineError, match="not managed"):
                engine.remove_container(foreign.id)
            foreign.reload()
        finally:
            foreign.remove(force=True)

    def test_extra_networks_connected_with_aliases(
        self, engine: DockerEngine, device_id: str, busybox_image: str, test_labels: dict[str, str]
    ) -> None:
        """Every attachment is connected before start with the service name and declared aliases."""
        labels = tuple(test_labels.items())
        front, back = f"{device_id}_edge_front", f"{device_id}_edge_back"
        for name in (front, back):
            engine.create_network(device_id, "edge", NetworkSpec(name, labels=labels))
        spec = make_spec(
            device_id,
            busybox_image,
            test_labels,
            networks=(NetworkAttachment(back, ("db",)), NetworkAttachment(front, ("api",))),
        )
        cid = engine.create_container(spec, "r1")
        info = engine.api.inspect_container(cid)
        nets = info["NetworkSettings"]["Networks"]
        assert info["HostConfig"]["NetworkMode"] == back
        assert set(nets) == {front, back}
        assert {"app", "db"} <= set(nets[back]["Aliases"])
        assert {"app", "api"} <= set(nets[front]["Aliases"])

    def test_unreachable_engine_is_engine_error(self) -> None:
        """An engine that does not answer raises EngineError, not a docker exception."""
        with pytest.raises(EngineError, match="docker"):
            DockerEngine("unix:///nonexistent/docker.sock").observe("dev")
