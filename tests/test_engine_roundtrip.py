"""Every ServiceSpec field arrives in ``docker inspect`` of the created container."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest

from reconciler.engine.docker import DockerEngine
from reconciler.model import (
    DeviceMapping,
    DeviceRequest,
    Healthcheck,
    LogConfig,
    Mount,
    NetworkAttachment,
    NetworkSpec,
    PortBinding,
    ServiceSpec,
    Ulimit,
    VolumeSpec,
)

pytestmark = pytest.mark.docker

MIB = 1024**2


@pytest.fixture
def created(
    device_id: str,
    busybox_image: str,
    test_labels: dict[str, str],
    tmp_path: Path,
    docker_client: docker.DockerClient,
) -> tuple[ServiceSpec, dict[str, Any]]:
    """A container created from a spec that sets every field, and its inspect output."""
    engine = DockerEngine()
    labels = tuple(test_labels.items())
    net = NetworkSpec(f"{device_id}_edge_default", labels=labels)
    vol = VolumeSpec(f"{device_id}_edge_state", labels=labels)
    engine.create_network(device_id, "edge", net)
    engine.create_volume(device_id, "edge", vol)
    config = tmp_path / "flows.json"
    config.write_text("[]")
    secret = tmp_path / "token"
    secret.write_text("not-logged")
    spec = ServiceSpec(
        device=device_id,
        stack="edge",
        service="bridge",
        container_name=f"{device_id}_edge_bridge",
        image=busybox_image,
        command=("sleep", "60"),
        entrypoint=("/bin/sh", "-c", 'exec "$@"', "--"),
        environment=(("MODE", "rtu"), ("PLC", "10.0.3.17")),
        labels=(("com.example.team", "ot"), *sorted(labels)),
        ports=(PortBinding(1880, "tcp", None, "127.0.0.1"), PortBinding(5020, "udp", None)),
        mounts=(
            Mount("config", str(config), "/data/flows.json", read_only=True),
            Mount("data", str(tmp_path), "/data/db"),
            Mount("secret", str(secret), "/run/secrets/token", read_only=True),
            Mount("tmpfs", "", "/scratch"),
            Mount("volume", vol.name, "/var/lib/state"),
        ),
        tmpfs=(("/run/app", "size=1m"),),
        networks=(NetworkAttachment(net.name, ("plc-bridge",)),),
        devices=(DeviceMapping("/dev/null", "/dev/plc0", "rw"),),
        device_requests=(DeviceRequest("nvidia", 1, (), (("gpu",),), ()),),
        cap_add=("NET_ADMIN",),
        cap_drop=("MKNOD",),
        user="1000:1000",
        working_dir="/srv",
        hostname="bridge",
        init=True,
        read_only=True,
        restart="on-failure:3",
        healthcheck=Healthcheck(("CMD-SHELL", "true"), 5.0, 2.0, 3, 1.0),
        logging=LogConfig("json-file", (("max-size", "1m"),)),
        mem_limit=64 * MIB,
        mem_reservation=32 * MIB,
        nano_cpus=250_000_000,
        shm_size=16 * MIB,
        ulimits=(Ulimit("nofile", 1024, 2048),),
        extra_hosts=("plc:10.0.3.17",),
        stop_signal="SIGINT",
        stop_grace_period=7.0,
        config_hash="h",
    )
    cid = engine.create_container(spec, "r1")
    return spec, docker_client.api.inspect_container(cid)


class TestRoundTrip:
    def test_config_fields(self, created: tuple[ServiceSpec, dict[str, Any]]) -> None:
        """Image, command, entrypoint, env, user, dirs, stop settings and health reach Config."""
        spec, info = created
        c = info["Config"]
        assert c["Image"] == spec.image
        assert c["Cmd"] == ["sleep", "60"]
        assert c["Entrypoint"] == ["/bin/sh", "-c", 'exec "$@"', "--"]
        assert {"MODE=rtu", "PLC=10.0.3.17"} <= set(c["Env"])
        assert (c["User"], c["WorkingDir"], c["Hostname"]) == ("1000:1000", "/srv", "bridge")
        assert (c["StopSignal"], c["StopTimeout"]) == ("SIGINT", 7)
        assert c["Healthcheck"] == {
            "Test": ["CMD-SHELL", "true"],
            "Interval": 5_000_000_000,
            "Timeout": 2_000_000_000,
            "Retries": 3,
            "StartPeriod": 1_000_000_000,
        }
        assert c["Labels"]["com.example.team"] == "ot"
        assert c["Labels"]["io.fleetgate.service"] == "bridge"
        assert set(c["ExposedPorts"]) == {"1880/tcp", "5020/udp"}

    def test_host_config_fields(self, created: tuple[ServiceSpec, dict[str, Any]]) -> None:
        """Ports, restart, devices, limits, security and logging reach HostConfig."""
        spec, h = created[0], created[1]["HostConfig"]
        assert h["PortBindings"] == {
            "1880/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
            "5020/udp": [{"HostIp": "", "HostPort": ""}],
        }
        assert h["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        assert h["Devices"] == [
            {"PathOnHost": "/dev/null", "PathInContainer": "/dev/plc0", "CgroupPermissions": "rw"}
        ]
        assert h["DeviceRequests"] == [
            {
                "Driver": "nvidia",
                "Count": 1,
                "DeviceIDs": None,
                "Capabilities": [["gpu"]],
                "Options": None,
            }
        ]
        assert [c.removeprefix("CAP_") for c in h["CapAdd"]] == ["NET_ADMIN"]
        assert [c.removeprefix("CAP_") for c in h["CapDrop"]] == ["MKNOD"]
        assert (h["Privileged"], h["Init"], h["ReadonlyRootfs"]) == (False, True, True)
        assert h["NetworkMode"] == spec.networks[0].network
        assert (h["Memory"], h["MemoryReservation"], h["NanoCpus"], h["ShmSize"]) == (
            64 * MIB,
            32 * MIB,
            250_000_000,
            16 * MIB,
        )
        assert h["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
        assert h["ExtraHosts"] == ["plc:10.0.3.17"]
        assert h["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
        assert h["Tmpfs"] == {"/run/app": "size=1m"}

    def test_mounts(self, created: tuple[ServiceSpec, dict[str, Any]]) -> None:
        """Every mount arrives at its target with its kind and read-only flag."""
        spec, info = created
        got = {m["Destination"]: (m["Type"], m["RW"]) for m in info["Mounts"]}
        assert got == {
            "/data/flows.json": ("bind", False),
            "/data/db": ("bind", True),
            "/run/secrets/token": ("bind", False),
            "/scratch": ("tmpfs", True),
            "/var/lib/state": ("volume", True),
        }
        volume = next(m for m in info["Mounts"] if m["Type"] == "volume")
        assert volume["Name"] == spec.mounts[-1].source

    def test_network_aliases(self, created: tuple[ServiceSpec, dict[str, Any]]) -> None:
        """The container joins its network under its service name and declared aliases."""
        spec, info = created
        aliases = info["NetworkSettings"]["Networks"][spec.networks[0].network]["Aliases"]
        assert {"bridge", "plc-bridge", spec.container_name} <= set(aliases)

    def test_privileged_and_host_network(
        self, device_id: str, busybox_image: str, docker_client: docker.DockerClient
    ) -> None:
        """Privileged and host network mode are set when the spec asks for them."""
        spec = ServiceSpec(
            device=device_id,
            stack="edge",
            service="fieldbus",
            container_name=f"{device_id}_edge_fieldbus",
            image=busybox_image,
            network_mode="host",
            privileged=True,
        )
        h = docker_client.api.inspect_container(DockerEngine().create_container(spec, "r"))[
            "HostConfig"
        ]
        assert (h["NetworkMode"], h["Privileged"]) == ("host", True)
