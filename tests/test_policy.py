"""Device policy: every rule refuses at the compose line, and a local policy only narrows."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.manifests.policy import host_path_allowed, image_registry, narrow, parse_policy
from reconciler.manifests.policy_rules import device_allowed, volume_host_source
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.validate import check_fleet
from reconciler.model import Location, Policy, VolumeSpec

FLEET = """\
policy:
  registries: [docker.io, registry.plant.example]
  hostPaths: [/var/lib/plc]
  devices: ["/dev/ttyUSB*"]
  capabilities: [NET_ADMIN]
"""


def violations(root: Path, service: str, fleet: str = FLEET) -> list[str]:
    """Validate a one-device fleet whose stack `app` has one service `web` (body given)."""
    files = {
        "fleet.yaml": fleet,
        "devices/d1.yaml": "stacks: [app]\n",
        "stacks/app/compose.yaml": "services:\n  web:\n" + textwrap.indent(service, "    "),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return [str(f) for f in check_fleet(RepoTree(root)).findings]


P = "stacks/app/compose.yaml"


class TestCheck:
    def test_allowed_service_passes(self, tmp_path: Path) -> None:
        """A service within every allowance has no finding."""
        service = (
            "image: registry.plant.example/ot/app:1\nvolumes: ['/var/lib/plc/x:/x']\n"
            "devices: ['/dev/ttyUSB0']\ncap_add: [CAP_NET_ADMIN]\n"
        )
        assert violations(tmp_path, service) == []

    @pytest.mark.parametrize(
        ("service", "expected"),
        [
            (
                "image: ghcr.io/acme/app:1\n",
                f"{P}:3: service 'web': registry ghcr.io is not allowed; use an image from "
                "docker.io, registry.plant.example or add it to fleet.yaml policy.registries",
            ),
            (
                "image: busybox\nprivileged: ${PRIV:-true}\n",
                f"{P}:4: service 'web': privileged is not allowed; grant devices or cap_add "
                "instead, or allow it in fleet.yaml policy.privileged",
            ),
            (
                "image: busybox\nnetwork_mode: host\n",
                f"{P}:4: service 'web': network_mode host is not allowed; allow it in "
                "fleet.yaml policy.hostNetwork or publish ports instead",
            ),
            (
                "image: busybox\nvolumes:\n  - /var/lib/plcx:/x\n",
                f"{P}:4: service 'web': host path /var/lib/plcx is not allowed; allow it in "
                "fleet.yaml policy.hostPaths or remove the mount",
            ),
            (
                "image: busybox\ndevices: [/dev/ttyS0]\n",
                f"{P}:4: service 'web': device /dev/ttyS0 is not allowed; allow it in "
                "fleet.yaml policy.devices or remove it",
            ),
            (
                "image: busybox\ncap_add: [SYS_ADMIN]\n",
                f"{P}:4: service 'web': capability SYS_ADMIN is not allowed; allow it in "
                "fleet.yaml policy.capabilities or remove it from cap_add",
            ),
        ],
    )
    def test_each_rule_refuses_at_the_offending_line(
        self, tmp_path: Path, service: str, expected: str
    ) -> None:
        """Registries, privileged, host network, host paths, devices and capabilities."""
        assert violations(tmp_path, service) == [f"{expected} (device d1)"]

    @pytest.mark.parametrize("source", ["/var/run/docker.sock", "/run/docker.sock", "/", "/run"])
    def test_docker_socket_and_root_are_refused_even_when_allowed(
        self, tmp_path: Path, source: str
    ) -> None:
        """No hostPaths entry, not even `/`, allows the Docker socket or the root."""
        fleet = "policy:\n  hostPaths: [/]\n"
        (found,) = violations(tmp_path, f"image: busybox\nvolumes: ['{source}:/h']\n", fleet)
        assert found.startswith(f"{P}:4: service 'web': host path {source} is not allowed")
        assert "it would hand out the host; remove the mount" in found


class TestImageRegistry:
    @pytest.mark.parametrize(
        ("image", "registry"),
        [
            ("busybox", "docker.io"),
            ("library/busybox:1", "docker.io"),
            ("acme/app@sha256:" + "0" * 64, "docker.io"),
            ("localhost:5000/x", "localhost:5000"),
            ("localhost/x", "localhost"),
            ("Registry.Plant.Example/ot/app:1", "registry.plant.example"),
            ("ghcr.io/acme/app", "ghcr.io"),
        ],
    )
    def test_registry_is_parsed_like_docker(self, image: str, registry: str) -> None:
        """No domain is docker.io; a first component with '.', ':' or localhost is a registry."""
        assert image_registry(image) == registry


class TestHostPaths:
    def test_prefix_is_by_path_component(self) -> None:
        """/var/lib/plc allows /var/lib/plc/x but not /var/lib/plcx."""
        policy = Policy(host_paths=("/var/lib/plc",))
        assert host_path_allowed("/var/lib/plc/x", policy)
        assert host_path_allowed("/var/lib/plc", policy)
        assert not host_path_allowed("/var/lib/plcx", policy)
        assert not host_path_allowed("/var/lib/plc/../../../etc", policy)

    @pytest.mark.parametrize(
        "path", ["//var/run/docker.sock", "/var//run/docker.sock", "/proc/1/root", "/run", "//"]
    )
    def test_refused_paths_survive_every_spelling(self, path: str) -> None:
        """Repeated slashes cannot hide the Docker socket or the root, even with hostPaths /."""
        assert not host_path_allowed(path, Policy(host_paths=("/",)))


class TestNarrow:
    def test_local_policy_never_widens(self) -> None:
        """Every permission in the result is held by both the fleet and the local policy."""
        fleet = Policy(
            registries=("docker.io", "registry.plant.example"),
            privileged=False,
            host_network=True,
            host_paths=("/var/lib/plc",),
            devices=("/dev/ttyUSB*",),
            capabilities=("NET_ADMIN",),
        )
        local = Policy(
            registries=("registry.plant.example", "ghcr.io"),
            privileged=True,
            host_network=True,
            host_paths=("/var/lib/plc/line1", "/etc"),
            devices=("/dev/ttyUSB0", "/dev/ttyS*"),
            capabilities=("NET_ADMIN", "SYS_ADMIN"),
        )
        assert narrow(fleet, local) == Policy(
            registries=("registry.plant.example",),
            privileged=False,
            host_network=True,
            host_paths=("/var/lib/plc/line1",),
            devices=("/dev/ttyUSB0",),
            capabilities=("NET_ADMIN",),
        )

    def test_any_registry_on_one_side_keeps_the_other(self) -> None:
        """An absent registries list (any) intersected with a list is that list."""
        assert narrow(Policy(), Policy(registries=("docker.io",))).registries == ("docker.io",)
        assert narrow(Policy(registries=("a.io",)), Policy()).registries == ("a.io",)
        assert narrow(Policy(), Policy()).registries is None


class TestParsePolicy:
    def test_wrong_types_are_findings_with_safe_defaults(self) -> None:
        """A non-boolean flag, a relative host path and an unknown key are each reported."""
        mapping = {"privileged": "yes", "hostPaths": ["/ok", "rel"], "hostnetwork": True}
        policy, found = parse_policy(mapping, Location("/etc/fleetgate/agent.yaml", 7))
        assert [str(f) for f in found] == [
            "/etc/fleetgate/agent.yaml:7: unknown policy key 'hostnetwork'; use one of "
            "registries, privileged, hostNetwork, hostPaths, devices, capabilities, "
            "hostPid, unconfined",
            "/etc/fleetgate/agent.yaml:7: policy.privileged must be true or false",
            "/etc/fleetgate/agent.yaml:7: policy.hostPaths entries must be absolute",
        ]
        assert policy == Policy(host_paths=("/ok",))


def doc_violations(root: Path, doc: str, fleet: str = FLEET) -> list[str]:
    """Validate a one-device fleet whose stack `app` is the whole compose ``doc``."""
    files = {
        "fleet.yaml": fleet,
        "devices/d1.yaml": "stacks: [app]\n",
        "stacks/app/compose.yaml": doc,
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return [str(f) for f in check_fleet(RepoTree(root)).findings]


WEB = "services:\n  web:\n    image: busybox\n"  # lines 1-3


class TestEveryWayToTheHost:
    """Each way a manifest reaches the host is checked, at the line of the offending key."""

    @pytest.mark.parametrize(
        ("doc", "expected"),
        [
            (
                WEB + "    secrets: [pw]\nsecrets:\n  pw:\n    file: /etc/shadow\n",
                f"{P}:7: service 'web': secret 'pw' file /etc/shadow is not allowed; allow it "
                "in fleet.yaml policy.hostPaths or remove the secret",
            ),
            (
                WEB + "    secrets: [s]\nsecrets:\n  s:\n    file: /var/lib/plc/../../run/"
                "docker.sock\n",
                f"{P}:7: service 'web': secret 's' file /var/run/docker.sock is not allowed; it "
                "would hand out the host; remove the secret",
            ),
            (
                WEB + "    volumes: [v:/h]\nvolumes:\n  v: {external: true, name: /etc}\n",
                f"{P}:6: volume 'v': name /etc is a host path, not a volume name (Docker would "
                "bind it); use a plain name of letters, digits, _ . -",
            ),
            (
                WEB + "    volumes: [v:/h]\nvolumes:\n  v:\n    driver_opts:\n"
                "      type: none\n      o: bind\n      device: /etc\n",
                f"{P}:10: volume 'v': driver_opts bind host path /etc is not allowed; allow it "
                "in fleet.yaml policy.hostPaths or remove it",
            ),
            (
                WEB + "    volumes: [v:/h]\nvolumes:\n  v:\n    driver_opts: {type: cifs}\n",
                f"{P}:7: volume 'v': driver_opts type cifs mounts a filesystem policy cannot "
                "check; use a plain local volume or a bind under fleet.yaml policy.hostPaths",
            ),
            (
                WEB + "    volumes: [v:/h]\nvolumes:\n  v:\n    driver: rexray\n",
                f"{P}:7: volume 'v': driver rexray is not allowed, policy cannot see what it "
                "reaches; use the local driver",
            ),
            (
                WEB + "    networks: [n]\nnetworks:\n  n:\n    external: true\n    name: host\n",
                f"{P}:8: network 'n': the host network is host networking, not allowed; allow "
                "it in fleet.yaml policy.hostNetwork or use a bridge network",
            ),
            (
                WEB + "    network_mode: container:sshd\n",
                f"{P}:4: service 'web': network_mode container:sshd joins a container this "
                "stack does not own; use service:NAME of a service in this stack or a network",
            ),
            (
                WEB + "    devices: ['/dev/ttyUSB0/../sda']\n",
                f"{P}:4: service 'web': device /dev/ttyUSB0/../sda (that is /dev/sda) is not "
                "allowed; allow it in fleet.yaml policy.devices or remove it",
            ),
        ],
    )
    def test_refused_at_the_offending_key(self, tmp_path: Path, doc: str, expected: str) -> None:
        """Secrets, volume names, driver_opts, drivers, networks, joins and devices."""
        assert doc_violations(tmp_path, doc) == [f"{expected} (device d1)"]

    @pytest.mark.parametrize(
        "doc",
        [
            WEB + "    secrets: [pw]\nsecrets:\n  pw: {file: /var/lib/plc/pw}\n",
            WEB + "    volumes: [v:/h]\nvolumes:\n  v:\n    driver_opts:\n"
            "      {type: none, o: bind, device: /var/lib/plc/data}\n",
            WEB + "    volumes: [v:/h]\nvolumes:\n  v:\n    driver_opts:\n"
            "      {type: tmpfs, device: tmpfs, o: size=64m}\n",
            WEB + "    volumes: [v:/h]\nvolumes:\n  v: {external: true, name: plant-data}\n",
            WEB + "    networks: [n]\nnetworks:\n  n: {external: true, name: none}\n",
            WEB + "  side:\n    image: busybox\n    network_mode: service:web\n",
            WEB + "    container_name: web1\n  side:\n    image: busybox\n"
            "    network_mode: container:web1\n",
        ],
    )
    def test_what_the_policy_allows_passes(self, tmp_path: Path, doc: str) -> None:
        """Allowed host paths, tmpfs and plain volumes, `none` and same-stack joins pass."""
        assert doc_violations(tmp_path, doc) == []

    def test_secret_is_refused_without_host_paths(self, tmp_path: Path) -> None:
        """A secret file is a host path: with no hostPaths it is refused like a bind."""
        doc = WEB + "    secrets: [pw]\nsecrets:\n  pw: {file: /var/lib/plc/pw}\n"
        (found,) = doc_violations(tmp_path, doc, fleet="policy: {}\n")
        assert found.startswith(f"{P}:6: service 'web': secret 'pw' file /var/lib/plc/pw")

    def test_joining_a_service_inherits_its_check(self, tmp_path: Path) -> None:
        """`service:x` is allowed, but x on the host network is still refused."""
        doc = WEB + "    network_mode: host\n  side:\n    image: busybox\n"
        doc += "    network_mode: service:web\n"
        (found,) = doc_violations(tmp_path, doc)
        assert found.startswith(f"{P}:4: service 'web': network_mode host is not allowed")


class TestDevices:
    @pytest.mark.parametrize(
        ("path", "globs", "allowed"),
        [
            ("/dev/serial/by-id/usb-FTDI", ("/dev/serial/by-id/*",), True),
            ("/dev/serial/by-id/../../sda", ("/dev/serial/by-id/*",), False),
            ("//dev/ttyUSB0", ("/dev/ttyUSB*",), True),
            ("/etc/shadow", ("/*",), False),
            ("/etc/shadow", ("*",), False),
            ("/opt/fpga/0", ("/opt/fpga/*",), True),
        ],
    )
    def test_globs_match_the_normalized_path(
        self, path: str, globs: tuple[str, ...], allowed: bool
    ) -> None:
        """`..` cannot walk out of a glob, and outside /dev only a glob naming its folder."""
        assert device_allowed(path, Policy(devices=globs)) is allowed


class TestVolumeReach:
    @pytest.mark.parametrize(
        ("driver", "options", "reach"),
        [
            ("local", (), None),
            ("local", (("device", "/etc"), ("o", "bind"), ("type", "none")), ("bind", "/etc")),
            ("local", (("device", "/etc"), ("o", "rw,rbind")), ("bind", "/etc")),
            ("local", (("device", "/srv"),), ("bind", "/srv")),
            ("local", (("device", "tmpfs"), ("type", "tmpfs")), None),
            ("local", (("device", "/dev/sda1"), ("type", "ext4")), ("fs", "ext4")),
            ("nfs-plugin", (), ("driver", "nfs-plugin")),
        ],
    )
    def test_what_a_created_volume_reaches(
        self, driver: str, options: tuple[tuple[str, str], ...], reach: object
    ) -> None:
        """Binds by o/type/device, other filesystems and foreign drivers are told apart."""
        assert volume_host_source(VolumeSpec("v", driver, options=options)) == reach

    def test_external_volume_is_not_created(self) -> None:
        """An external volume's options never reach the engine (it is only used)."""
        spec = VolumeSpec("v", "local", external=True, options=(("device", "/"),))
        assert volume_host_source(spec) is None


class TestHostNetworkDriver:
    def test_a_network_with_the_host_driver_needs_host_network(self, tmp_path: Path) -> None:
        """A created network with `driver: host` is host networking like network_mode host."""
        doc = WEB + "    networks: [n]\nnetworks:\n  n:\n    driver: host\n"
        assert doc_violations(tmp_path, doc) == [
            f"{P}:7: network 'n': the host network is host networking, not allowed; allow it "
            "in fleet.yaml policy.hostNetwork or use a bridge network (device d1)"
        ]
