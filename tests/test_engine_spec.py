"""The pure ServiceSpec -> Engine API create-body mapping (no Docker needed)."""

from __future__ import annotations

from typing import Any

from reconciler.engine import spec as engine_spec
from reconciler.model import (
    DeviceMapping,
    DeviceRequest,
    Healthcheck,
    LogConfig,
    Mount,
    NetworkAttachment,
    PortBinding,
    ServiceSpec,
    Ulimit,
)


def _spec(**fields: Any) -> ServiceSpec:
    base: dict[str, Any] = {
        "device": "dev-1",
        "stack": "edge",
        "service": "app",
        "container_name": "dev-1_edge_app",
        "image": "registry.example/app:1.0",
        "config_hash": "c0ffee",
        "field_hashes": (("image", "aa11"), ("environment", "bb22")),
    }
    base.update(fields)
    return ServiceSpec(**base)


class TestLabels:
    def test_ownership_labels_added(self) -> None:
        """The body carries every io.fleetgate.* ownership label."""
        labels = engine_spec.container_config(_spec(labels=(("a", "b"),)), "f" * 40)["Labels"]
        assert labels == {
            "a": "b",
            "io.fleetgate.managed": "true",
            "io.fleetgate.device": "dev-1",
            "io.fleetgate.stack": "edge",
            "io.fleetgate.service": "app",
            "io.fleetgate.revision": "f" * 40,
            "io.fleetgate.config-hash": "c0ffee",
            "io.fleetgate.config-fields": "image=aa11,environment=bb22",
        }

    def test_user_label_cannot_fake_ownership(self) -> None:
        """A user label named like an ownership label is overridden by the real value."""
        spec = _spec(labels=(("io.fleetgate.device", "other"),))
        assert engine_spec.container_config(spec, "r")["Labels"]["io.fleetgate.device"] == "dev-1"

    def test_field_hashes_round_trip(self) -> None:
        """Encoded per-field hashes decode back to the same pairs."""
        pairs = (("image", "1a2b"), ("ports", "3c4d"))
        assert engine_spec.decode_field_hashes(engine_spec.encode_field_hashes(pairs)) == pairs


class TestConfig:
    def test_minimal_spec_leaves_image_defaults(self) -> None:
        """Unset command, entrypoint, user and healthcheck are omitted so the image's apply."""
        body = engine_spec.container_config(_spec(), "r")
        for key in ("Cmd", "Entrypoint", "User", "WorkingDir", "Healthcheck", "StopTimeout"):
            assert key not in body

    def test_process_fields(self) -> None:
        """Process fields (command, env, user, dirs, stop settings) map 1:1."""
        body = engine_spec.container_config(
            _spec(
                command=("sh", "-c", "echo hi"),
                entrypoint=("/bin/sh",),
                environment=(("A", "1"), ("B", "x=y")),
                user="1000:1000",
                working_dir="/srv",
                hostname="plc-bridge",
                stop_signal="SIGINT",
                stop_grace_period=5.0,
            ),
            "r",
        )
        assert body["Cmd"] == ["sh", "-c", "echo hi"]
        assert body["Entrypoint"] == ["/bin/sh"]
        assert body["Env"] == ["A=1", "B=x=y"]
        assert (body["User"], body["WorkingDir"], body["Hostname"]) == (
            "1000:1000",
            "/srv",
            "plc-bridge",
        )
        assert (body["StopSignal"], body["StopTimeout"]) == ("SIGINT", 5)

    def test_healthcheck_in_nanoseconds(self) -> None:
        """Healthcheck durations are nanoseconds and unset ones are left out."""
        hc = Healthcheck(("CMD-SHELL", "true"), interval=5.0, timeout=1.5, retries=3)
        body = engine_spec.container_config(_spec(healthcheck=hc), "r")
        assert body["Healthcheck"] == {
            "Test": ["CMD-SHELL", "true"],
            "Interval": 5_000_000_000,
            "Timeout": 1_500_000_000,
            "Retries": 3,
        }

    def test_ports(self) -> None:
        """Ports become ExposedPorts plus PortBindings, several per port."""
        ports = (
            PortBinding(80, "tcp", 8080),
            PortBinding(80, "tcp", 8081, "127.0.0.1"),
            PortBinding(5683, "udp"),
        )
        body = engine_spec.container_config(_spec(ports=ports), "r")
        assert body["ExposedPorts"] == {"80/tcp": {}, "5683/udp": {}}
        assert body["HostConfig"]["PortBindings"] == {
            "80/tcp": [
                {"HostIp": "", "HostPort": "8080"},
                {"HostIp": "127.0.0.1", "HostPort": "8081"},
            ],
            "5683/udp": [{"HostIp": "", "HostPort": ""}],
        }


class TestHostConfig:
    def test_mounts_split_like_compose(self) -> None:
        """Bind-like and volume mounts become Binds; tmpfs and secrets become Mounts."""
        mounts = (
            Mount("config", "/state/configs/ab/flows.json", "/data/flows.json", read_only=True),
            Mount("data", "/state/data/dev-1/edge/db", "/var/lib/db"),
            Mount("volume", "dev-1_edge_cache", "/cache"),
            Mount("secret", "/etc/plant/token", "/run/secrets/token", read_only=True),
            Mount("tmpfs", "", "/scratch"),
        )
        hc = engine_spec.container_config(_spec(mounts=mounts), "r")["HostConfig"]
        assert hc["Binds"] == [
            "/state/configs/ab/flows.json:/data/flows.json:ro",
            "/state/data/dev-1/edge/db:/var/lib/db:rw",
            "dev-1_edge_cache:/cache:rw",
        ]
        assert hc["Mounts"] == [
            {
                "Type": "bind",
                "Source": "/etc/plant/token",
                "Target": "/run/secrets/token",
                "ReadOnly": True,
            },
            {"Type": "tmpfs", "Target": "/scratch", "ReadOnly": False},
        ]

    def test_restart_policies(self) -> None:
        """Restart strings map to a policy name and retry count."""
        assert engine_spec.restart_policy("on-failure:3") == {
            "Name": "on-failure",
            "MaximumRetryCount": 3,
        }
        assert engine_spec.restart_policy("unless-stopped") == {
            "Name": "unless-stopped",
            "MaximumRetryCount": 0,
        }

    def test_resources_and_security(self) -> None:
        """Limits, ulimits, devices, capabilities and logging map onto HostConfig."""
        spec = _spec(
            devices=(DeviceMapping("/dev/ttyUSB0", "/dev/plc", "rw"),),
            device_requests=(DeviceRequest(count=-1, capabilities=(("gpu",),)),),
            cap_add=("NET_ADMIN",),
            cap_drop=("MKNOD",),
            privileged=True,
            init=True,
            read_only=True,
            mem_limit=128 * 1024**2,
            mem_reservation=64 * 1024**2,
            nano_cpus=500_000_000,
            shm_size=64 * 1024**2,
            ulimits=(Ulimit("nofile", 1024, 2048),),
            extra_hosts=("plc:10.0.3.17",),
            logging=LogConfig("json-file", (("max-size", "1m"),)),
            tmpfs=(("/run", "size=1m"),),
        )
        hc = engine_spec.container_config(spec, "r")["HostConfig"]
        assert hc["Devices"] == [
            {"PathOnHost": "/dev/ttyUSB0", "PathInContainer": "/dev/plc", "CgroupPermissions": "rw"}
        ]
        assert hc["DeviceRequests"] == [
            {
                "Driver": "",
                "Count": -1,
                "DeviceIDs": None,
                "Capabilities": [["gpu"]],
                "Options": None,
            }
        ]
        assert (hc["CapAdd"], hc["CapDrop"], hc["Privileged"]) == (
            ["CAP_NET_ADMIN"],
            ["CAP_MKNOD"],
            True,
        )
        assert engine_spec.capability("ALL") == "ALL"
        assert (hc["Init"], hc["ReadonlyRootfs"]) == (True, True)
        assert (hc["Memory"], hc["MemoryReservation"], hc["NanoCpus"], hc["ShmSize"]) == (
            128 * 1024**2,
            64 * 1024**2,
            500_000_000,
            64 * 1024**2,
        )
        assert hc["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
        assert hc["ExtraHosts"] == ["plc:10.0.3.17"]
        assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
        assert hc["Tmpfs"] == {"/run": "size=1m"}


class TestNetworks:
    def test_first_network_is_network_mode(self) -> None:
        """The first attachment is NetworkMode and the only create endpoint."""
        spec = _spec(
            networks=(
                NetworkAttachment("dev-1_edge_back", ("db",)),
                NetworkAttachment("dev-1_edge_front"),
            )
        )
        body = engine_spec.container_config(spec, "r")
        assert body["HostConfig"]["NetworkMode"] == "dev-1_edge_back"
        assert body["NetworkingConfig"] == {
            "EndpointsConfig": {"dev-1_edge_back": {"Aliases": ["dev-1_edge_app", "app", "db"]}}
        }
        assert engine_spec.extra_network_attachments(spec) == (
            NetworkAttachment("dev-1_edge_front"),
        )

    def test_host_network_has_no_endpoints(self) -> None:
        """network_mode host sets NetworkMode and configures no endpoints or extra networks."""
        spec = _spec(network_mode="host", networks=(NetworkAttachment("dev-1_edge_default"),))
        body = engine_spec.container_config(spec, "r")
        assert body["HostConfig"]["NetworkMode"] == "host"
        assert "NetworkingConfig" not in body
        assert engine_spec.extra_network_attachments(spec) == ()

    def test_static_address(self) -> None:
        """An attachment's IPv4 address goes into IPAMConfig."""
        att = NetworkAttachment("n", (), "172.30.0.5")
        assert engine_spec.endpoint_config(_spec(), att)["IPAMConfig"] == {
            "IPv4Address": "172.30.0.5"
        }
