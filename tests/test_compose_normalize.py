"""Compose normalization: one interpolated compose document -> engine-ready specs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support.compose import DOCKER_COMPOSE

from reconciler.manifests.tree import RepoTree
from reconciler.manifests.yamlio import parse_yaml
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
from reconciler.render.compose.context import StackContext
from reconciler.render.compose.document import NormalizedStack, normalize_compose
from reconciler.render.interpolation import interpolate_document

VARS = {"TZ": "Europe/Berlin", "PORT": "8080"}


def normalize(root: Path, compose: str, files: dict[str, str] | None = None) -> NormalizedStack:
    stack_dir = root / "stacks" / "app"
    stack_dir.mkdir(parents=True, exist_ok=True)
    (stack_dir / "compose.yaml").write_text(compose)
    for name, text in (files or {}).items():
        path = stack_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    doc, problems = interpolate_document(parse_yaml(compose, "stacks/app/compose.yaml"), VARS)
    assert problems == ()
    ctx = StackContext(
        tree=RepoTree(root),
        device="dev1",
        stack="app",
        compose_path="stacks/app/compose.yaml",
        state_dir="/state",
        lock_dir="/state/locks/dev1/app",
        variables=VARS,
    )
    return normalize_compose(doc, ctx)


def service(
    root: Path, body: str, files: dict[str, str] | None = None, top: str = ""
) -> ServiceSpec:
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    result = normalize(root, f"services:\n  web:\n    image: app:1\n{indented}\n{top}", files)
    errors = [str(f) for f in result.findings if f.is_error]  # warnings: tested elsewhere
    assert errors == [], errors
    return result.services[0]


def messages(root: Path, compose: str, files: dict[str, str] | None = None) -> list[str]:
    return [str(f) for f in sorted(normalize(root, compose, files).findings)]


class TestBasics:
    def test_names_follow_the_fleet_conventions(self, tmp_path: Path) -> None:
        """Container, default network and volume names are prefixed device_stack_."""
        svc = service(tmp_path, "volumes: [data:/data]", top="volumes:\n  data: {}\n")
        assert svc.container_name == "dev1_app_web"
        assert svc.networks == (NetworkAttachment("dev1_app_default", ("web",)),)
        assert svc.mounts == (Mount("volume", "dev1_app_data", "/data"),)

    def test_command_string_is_shell_split_and_list_kept(self, tmp_path: Path) -> None:
        """A string command is split like a shell; a list is used as is."""
        svc = service(tmp_path, "command: echo \"a b\" 'c d' e\\ f\nentrypoint: [/bin/sh, -c]")
        assert svc.command == ("echo", "a b", "c d", "e f")
        assert svc.entrypoint == ("/bin/sh", "-c")

    @pytest.mark.parametrize(
        ("line", "words"),
        [
            ('a "b;c" d', ("a", "b;c", "d")),
            ("a 'b|c' e\\;f", ("a", "b|c", "e;f")),
            ("echo $$(date +%s) `x y`", ("echo", "$(date +%s)", "`x y`")),
            ('a "" # b', ("a", "", "#", "b")),
        ],
    )
    def test_command_string_splits_like_compose_go(
        self, tmp_path: Path, line: str, words: tuple[str, ...]
    ) -> None:
        """Quotes, escapes, backticks and $(...) group words as compose-go's shellwords does."""
        assert service(tmp_path, f"command: {json.dumps(line)}").command == words

    @pytest.mark.parametrize("op", [";", "&&", "|", ">", "<", "&"])
    def test_command_string_with_a_shell_operator_is_a_finding(
        self, tmp_path: Path, op: str
    ) -> None:
        """Compose silently drops a command's words after ; && | < > &: render refuses it."""
        got = messages(tmp_path, f"services:\n  web:\n    image: x\n    command: a {op} b\n")
        assert got == [
            f"stacks/app/compose.yaml:4: services.web.command: uses a shell operator {op!r} "
            "that Compose would cut off here; write it as a list: [sh, -c, '...']"
        ]

    def test_environment_map_list_and_bare_names(self, tmp_path: Path) -> None:
        """Bare names come from the variables (omitted if unset); env wins over env_file."""
        svc = service(
            tmp_path,
            "env_file: [app.env]\nenvironment: [TZ, NOPE, 'A=x=y', B=]",
            files={
                "app.env": "# c\nexport A=1\nC=\"q ${TZ}\\n\" # not comment\nD='${TZ}' \nE=v # c\n"
            },
        )
        assert svc.environment == (
            ("A", "x=y"),
            ("B", ""),
            ("C", "q Europe/Berlin\n"),
            ("D", "${TZ}"),
            ("E", "v"),
            ("TZ", "Europe/Berlin"),
        )

    def test_unsupported_keys_are_named(self, tmp_path: Path) -> None:
        """`build` and unknown top-level keys are findings naming the key and line."""
        got = messages(tmp_path, "services:\n  web:\n    image: x\n    build: .\ninclude: [a]\n")
        assert got == [
            "stacks/app/compose.yaml:4: services.web.build: is not supported by fleetgate; "
            "remove it (see the Compose subset)",
            "stacks/app/compose.yaml:5: include: is not supported by fleetgate; remove it",
        ]


class TestPorts:
    def test_short_and_long_syntax(self, tmp_path: Path) -> None:
        """Every short form and the long form give one binding per port."""
        svc = service(
            tmp_path,
            "ports:\n"
            "  - 127.0.0.1:8080:80/udp\n"
            "  - 5000-5001:6000-6001\n"
            "  - '90'\n"
            "  - '[::1]:81:81'\n"
            "  - {target: 53, published: '5353', protocol: udp, host_ip: 0.0.0.0}",
        )
        assert svc.ports == (
            PortBinding(80, "udp", 8080, "127.0.0.1"),
            PortBinding(6000, "tcp", 5000),
            PortBinding(6001, "tcp", 5001),
            PortBinding(90, "tcp", None),
            PortBinding(81, "tcp", 81, "::1"),
            PortBinding(53, "udp", 5353, "0.0.0.0"),
        )

    def test_invalid_ports_are_findings_at_their_line(self, tmp_path: Path) -> None:
        """Out-of-range ports and mismatched ranges name the compose line."""
        got = messages(
            tmp_path,
            "services:\n  web:\n    image: x\n    ports:\n      - '70000:80'\n      - '1-3:1-2'\n",
        )
        assert got[0].startswith(
            "stacks/app/compose.yaml:5: services.web.ports[0]: host port 70000"
        )
        assert got[1].startswith("stacks/app/compose.yaml:6: services.web.ports[1]: host range")

    def test_ports_agree_with_docker_compose(self, tmp_path: Path) -> None:
        """Published/target/protocol/host_ip equal what `docker-compose config` computes."""
        specs = [
            "127.0.0.1:8080:80/udp",
            "5000-5002:6000-6002",
            "90",
            "[::1]:81:81",
            "127.0.0.1::82",
        ]
        compose = "services:\n  web:\n    image: x\n    ports: " + json.dumps(specs) + "\n"
        ours = normalize(tmp_path, compose).services[0].ports
        out = subprocess.run(
            [str(DOCKER_COMPOSE), "-f", "stacks/app/compose.yaml", "config", "--format", "json"],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        theirs = [
            PortBinding(
                p["target"],
                p["protocol"],
                int(p["published"]) if p.get("published") else None,
                p.get("host_ip", ""),
            )
            for p in json.loads(out.stdout)["services"]["web"]["ports"]
        ]
        assert list(ours) == theirs


class TestMounts:
    def test_kinds_per_design_paths(self, tmp_path: Path) -> None:
        """Repo paths are configs (ro), missing ones data, absolute host, lock dir lock."""
        svc = service(
            tmp_path,
            "volumes:\n"
            "  - ./conf:/etc/app\n"
            "  - ./app.ini:/app.ini:rw\n"
            "  - ./state:/var/lib/app\n"
            "  - /srv/plc:/plc:ro\n"
            "  - /state/locks/dev1/app:/run/fleetgate\n"
            "  - {type: tmpfs, target: /scratch}",
            files={"conf/a.yaml": "a", "conf/sub/b.yaml": "b", "app.ini": "x"},
        )
        kinds = {m.target: (m.kind, m.read_only) for m in svc.mounts}
        assert kinds == {
            "/etc/app": ("config", True),
            "/app.ini": ("config", False),
            "/var/lib/app": ("data", False),
            "/plc": ("host", True),
            "/run/fleetgate": ("lock", False),
            "/scratch": ("tmpfs", False),
        }
        by_target = {m.target: m.source for m in svc.mounts}
        assert by_target["/var/lib/app"] == "/state/data/dev1/app/state"
        assert by_target["/etc/app"].startswith("/state/configs/dev1/app/")
        assert by_target["/etc/app"].endswith("/conf")

    def test_config_directory_lists_every_file(self, tmp_path: Path) -> None:
        """A config directory contributes one ConfigFile per file, under its materialized dir."""
        result = normalize(
            tmp_path,
            "services:\n  web:\n    image: x\n    volumes: [./conf:/c]\n",
            files={"conf/a.yaml": "a", "conf/sub/b.yaml": "b"},
        )
        root = result.services[0].mounts[0].source
        assert [(c.repo_path, c.host_path) for c in result.config_files] == [
            ("stacks/app/conf/a.yaml", f"{root}/a.yaml"),
            ("stacks/app/conf/sub/b.yaml", f"{root}/sub/b.yaml"),
        ]
        assert result.data_dirs == ()

    def test_configs_and_secrets(self, tmp_path: Path) -> None:
        """File configs mount read-only at /<name>; secrets at /run/secrets/<name>."""
        svc = service(
            tmp_path,
            "configs: [app_conf, {source: app_conf, target: /etc/x.conf}]\nsecrets: [db]",
            files={"x.conf": "k=v"},
            top="configs:\n  app_conf: {file: ./x.conf}\n"
            "secrets:\n  db: {file: /etc/plant/db.pw}\n",
        )
        kinds = {m.target: (m.kind, m.read_only) for m in svc.mounts}
        assert kinds == {
            "/app_conf": ("config", True),
            "/etc/x.conf": ("config", True),
            "/run/secrets/db": ("secret", True),
        }
        assert Mount("secret", "/etc/plant/db.pw", "/run/secrets/db", True) in svc.mounts

    def test_mount_mistakes_are_findings(self, tmp_path: Path) -> None:
        """Anonymous volumes, undeclared volumes, repo secrets and escapes are refused."""
        got = messages(
            tmp_path,
            "services:\n  web:\n    image: x\n    volumes:\n      - /data\n      - nope:/n\n"
            "      - ../../../etc:/e\n    secrets: [s]\nsecrets:\n  s: {file: ./s.txt}\n",
        )
        assert len(got) == 4
        assert "anonymous volume" in got[0]
        assert "not declared" in got[1]
        assert "leads outside the repository" in got[2]
        assert "never commit secrets" in got[3]


class TestRuntimeFields:
    def test_resources_devices_health_logging(self, tmp_path: Path) -> None:
        """Limits, accelerators, devices, healthcheck, logging and ulimits map like compose."""
        svc = service(
            tmp_path,
            """
mem_limit: 512m
cpus: 0.5
shm_size: 64m
gpus: all
deploy:
  resources:
    reservations:
      devices: [{driver: nvidia, capabilities: [gpu]}]
devices: [/dev/ttyUSB0, '/dev/ttyS1:/dev/ttyS9:r']
healthcheck: {test: curl -f http://localhost, interval: 1m30s, retries: 3}
logging: {driver: json-file, options: {max-size: 10m}}
ulimits: {nofile: 1024, nproc: {soft: 10, hard: 20}}
restart: on-failure:3
extra_hosts: ['plc:10.0.0.2', 'mes=10.0.0.3']
tmpfs: /run:size=1m
stop_grace_period: 1m
""",
        )
        assert (svc.mem_limit, svc.nano_cpus, svc.shm_size) == (
            512 * 1024**2,
            500_000_000,
            64 * 1024**2,
        )
        assert svc.device_requests == (
            DeviceRequest(count=-1, capabilities=(("gpu",),)),
            DeviceRequest(driver="nvidia", count=-1, capabilities=(("gpu",),)),
        )
        assert svc.devices == (
            DeviceMapping("/dev/ttyUSB0", "/dev/ttyUSB0", "rwm"),
            DeviceMapping("/dev/ttyS1", "/dev/ttyS9", "r"),
        )
        assert svc.healthcheck == Healthcheck(
            ("CMD-SHELL", "curl -f http://localhost"), 90.0, retries=3
        )
        assert svc.logging == LogConfig("json-file", (("max-size", "10m"),))
        assert svc.ulimits == (Ulimit("nofile", 1024, 1024), Ulimit("nproc", 10, 20))
        assert svc.restart == "on-failure:3"
        assert svc.extra_hosts == ("plc:10.0.0.2", "mes:10.0.0.3")
        assert svc.tmpfs == (("/run", "size=1m"),)
        assert svc.stop_grace_period == 60.0

    def test_healthcheck_disable_and_network_mode_service(self, tmp_path: Path) -> None:
        """disable: true is NONE; network_mode service:x joins x's final container."""
        result = normalize(
            tmp_path,
            "services:\n  a:\n    image: x\n    healthcheck: {disable: true}\n"
            "  b:\n    image: y\n    network_mode: service:a\n",
        )
        a, b = result.services
        assert a.healthcheck == Healthcheck(("NONE",))
        assert (b.network_mode, b.networks) == ("container:dev1_app_a", ())

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            ("restart: sometimes", "services.web.restart: 'sometimes' is not"),
            ("mem_limit: lots", "services.web.mem_limit: 'lots' is not a size"),
            ("stop_grace_period: 10", "services.web.stop_grace_period: 10 has no unit"),
            ("pull_policy: build", "services.web.pull_policy: 'build' is not supported"),
            ("depends_on: [ghost]", "service 'ghost' is not defined"),
            ("networks: [ghost]", "network 'ghost' is not declared"),
        ],
    )
    def test_invalid_values_name_key_and_line(
        self, tmp_path: Path, body: str, fragment: str
    ) -> None:
        """Each wrong value is one finding at line 4 naming the key."""
        got = messages(tmp_path, f"services:\n  web:\n    image: x\n    {body}\n")
        assert len(got) == 1 and got[0].startswith("stacks/app/compose.yaml:4: ")
        assert fragment in got[0]
