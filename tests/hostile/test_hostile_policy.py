"""Hostile corpus, policy: every way a manifest could reach the host past the fleet policy.

Each case is a fleet an attacker with push rights could write; each failed (exit 0, the
hole open) on the code before the one policy check, unless its docstring line in
``REGRESSION`` says it guards a hole that was already closed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.hostile import Case, run_case

DEVICE = {"devices/d1.yaml": "stacks: [s]\n"}
C = "stacks/s/compose.yaml"


def fleet(policy: str = "") -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = dict(DEVICE)
    if policy:
        files["fleet.yaml"] = "policy:\n" + policy
    return files


def compose(text: str, policy: str = "") -> dict[str, str | bytes]:
    return fleet(policy) | {C: text}


SVC = "services:\n  x:\n    image: x\n"  # lines 1-3

REGRESSION = {
    "config-file-root": "the stack check already refused device configs; kept as a guard",
    "long-syntax-bind-root": "/ was already refused in long syntax; kept as a guard",
    "bind-dotdot-docker-sock": "normalization already refused it; kept as a guard",
    "bind-interpolated-root": "policy already ran after interpolation; kept as a guard",
    "network-mode-host": "network_mode host was already refused; kept as a guard",
}

CASES = [
    Case(
        name="secret-file-docker-sock",
        files=compose(
            SVC + "    secrets: [s]\nsecrets:\n  s:\n    file: /var/run/docker.sock\n",
            "  hostPaths: [/var]\n",
        ),
        expect=(f"{C}:7:", "secret 's' file /var/run/docker.sock", "hand out the host"),
    ),
    Case(
        name="config-file-root",
        files=compose(
            SVC + "    configs: [c]\nconfigs:\n  c:\n    file: /\n", "  hostPaths: [/]\n"
        ),
        expect=(f"{C}:6:", "config 'c': file must be a path of the repository"),
    ),
    Case(
        name="secret-outside-host-paths",
        files=compose(
            SVC + "    secrets:\n      - source: pw\n        target: /pw\n"
            "secrets:\n  pw:\n    file: /etc/shadow\n",
            "  hostPaths: [/var/lib/plc]\n",
        ),
        expect=(f"{C}:9:", "secret 'pw' file /etc/shadow is not allowed", "policy.hostPaths"),
    ),
    Case(
        name="external-volume-named-etc",
        files=compose(
            SVC + "    volumes: ['v:/host']\nvolumes:\n  v:\n    external: true\n    name: /etc\n"
        ),
        expect=(f"{C}:8:", "volume 'v': name /etc is a host path"),
    ),
    Case(
        name="volume-named-dotdot",
        files=compose(SVC + "    volumes: ['v:/host']\nvolumes:\n  v:\n    name: ../../etc\n"),
        expect=(f"{C}:7:", "volume 'v': name ../../etc is a host path"),
    ),
    Case(
        name="driver-opts-bind-etc",
        files=compose(
            SVC + "    volumes: ['v:/host']\nvolumes:\n  v:\n    driver_opts:\n"
            "      type: none\n      o: bind\n      device: /etc\n"
        ),
        expect=(f"{C}:10:", "volume 'v': driver_opts bind host path /etc is not allowed"),
    ),
    Case(
        name="driver-opts-device-docker-sock",
        files=compose(
            SVC + "    volumes: ['v:/host']\nvolumes:\n  v:\n    driver_opts:\n"
            "      o: bind\n      device: /run/docker.sock\n",
            "  hostPaths: [/run]\n",
        ),
        expect=(f"{C}:9:", "driver_opts bind host path /run/docker.sock", "hand out the host"),
    ),
    Case(
        name="driver-opts-nfs",
        files=compose(
            SVC + "    volumes: ['v:/host']\nvolumes:\n  v:\n    driver_opts:\n"
            "      type: nfs\n      o: addr=127.0.0.1,rw\n      device: ':/'\n"
        ),
        expect=(f"{C}:8:", "driver_opts type nfs mounts a filesystem policy cannot check"),
    ),
    Case(
        name="volume-plugin-driver",
        files=compose(
            SVC + "    volumes: ['v:/host']\nvolumes:\n  v:\n    driver: local-persist\n"
            "    driver_opts: {mountpoint: /}\n"
        ),
        expect=(f"{C}:7:", "volume 'v': driver local-persist is not allowed"),
    ),
    Case(
        name="external-network-host",
        files=compose(
            SVC + "    networks: [n]\nnetworks:\n  n:\n    external: true\n    name: host\n"
        ),
        expect=(f"{C}:8:", "network 'n': the host network", "policy.hostNetwork"),
    ),
    Case(
        name="network-named-container",
        files=compose(
            SVC + "    networks: [n]\nnetworks:\n  n:\n    external: true\n"
            "    name: 'container:sshd'\n"
        ),
        expect=(f"{C}:8:", "name container:sshd would join another namespace"),
    ),
    Case(
        name="network-mode-container-foreign",
        files=compose(SVC + "    network_mode: container:foo\n"),
        expect=(f"{C}:4:", "network_mode container:foo joins a container this stack does not own"),
    ),
    Case(
        name="network-mode-service-to-host-network",
        files=compose(
            SVC + "    networks: [n]\n  y:\n    image: y\n    network_mode: service:x\n"
            "networks:\n  n:\n    external: true\n    name: host\n"
        ),
        expect=(f"{C}:11:", "network 'n': the host network"),
    ),
    Case(
        name="network-mode-host",
        files=compose(SVC + "    network_mode: host\n"),
        expect=(f"{C}:4:", "network_mode host is not allowed"),
    ),
    Case(
        name="device-dotdot-escape",
        files=compose(
            SVC + "    devices: ['/dev/serial/by-id/../../sda:/dev/ttyX']\n",
            "  devices: ['/dev/serial/by-id/*']\n",
        ),
        expect=(f"{C}:4:", "device /dev/serial/by-id/../../sda (that is /dev/sda) is not allowed"),
    ),
    Case(
        name="device-not-under-dev",
        files=compose(SVC + "    devices: ['/etc/shadow:/dev/x']\n", "  devices: ['/*']\n"),
        expect=(f"{C}:4:", "device /etc/shadow is not allowed"),
    ),
    Case(
        name="long-syntax-bind-root",
        files=compose(
            SVC + "    volumes:\n      - type: bind\n        source: /\n        target: /host\n",
            "  hostPaths: [/]\n",
        ),
        expect=(f"{C}:4:", "host path / is not allowed", "hand out the host"),
    ),
    Case(
        name="bind-dotdot-docker-sock",
        files=compose(
            SVC + "    volumes: ['/var/run/../run/docker.sock:/s']\n", "  hostPaths: [/]\n"
        ),
        expect=(f"{C}:4:", "host path /var/run/docker.sock is not allowed"),
    ),
    Case(
        name="bind-double-slash-docker-sock",
        files=compose(SVC + "    volumes: ['//var/run/docker.sock:/s']\n", "  hostPaths: [/]\n"),
        expect=(f"{C}:4:", "docker.sock is not allowed", "hand out the host"),
    ),
    Case(
        name="bind-proc-host-root",
        files=compose(SVC + "    volumes: ['/proc:/host/proc:ro']\n", "  hostPaths: [/proc]\n"),
        expect=(f"{C}:4:", "host path /proc is not allowed", "hand out the host"),
    ),
    Case(
        name="bind-interpolated-root",
        files=compose(SVC + "    volumes: ['${ROOT}:/host']\n", "  hostPaths: [/srv]\n")
        | {"devices/d1.yaml": "stacks: [s]\nvariables: {ROOT: /}\n"},
        expect=(f"{C}:4:", "host path / is not allowed"),
    ),
]


class TestPolicyCorpus:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """A fleet reaching the host past its policy is refused with exit 1 at file:line."""
        run_case(case, tmp_path)

    def test_regression_guards_name_cases(self) -> None:
        """Every case said to guard an already-closed hole is in the corpus."""
        assert set(REGRESSION) <= {c.name for c in CASES}
