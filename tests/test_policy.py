"""Device policy: every rule refuses at the compose line, and a local policy only narrows."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.model import Location, Policy
from reconciler.policy import host_path_allowed, image_registry, narrow, parse_policy
from reconciler.tree import RepoTree
from reconciler.validate import check_fleet

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
            "registries, privileged, hostNetwork, hostPaths, devices, capabilities",
            "/etc/fleetgate/agent.yaml:7: policy.privileged must be true or false",
            "/etc/fleetgate/agent.yaml:7: policy.hostPaths entries must be absolute",
        ]
        assert policy == Policy(host_paths=("/ok",))
