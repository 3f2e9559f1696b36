"""Static Compose checks and hostile input: every rule reported at its file and line."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from reconciler.manifests.repository import load_repository
from reconciler.manifests.tree import RepoTree


def stack(root: Path, compose: str, extra: dict[str, str] | None = None) -> list[str]:
    """Write stacks/app/compose.yaml (plus extra files) and return the load findings."""
    for rel, text in {"stacks/app/compose.yaml": compose, **(extra or {})}.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    repo, found = load_repository(RepoTree(root))
    stack_found = [f for f in found if f.path.startswith("stacks/app")]
    assert ("app" in repo.stacks) == (not stack_found), "a stack with findings is left out"
    return [str(f) for f in found]


P = "stacks/app/compose.yaml"


class TestDependencies:
    def test_unknown_dependency_is_named_at_its_entry(self, tmp_path: Path) -> None:
        """depends_on naming a service that does not exist is reported at the entry line."""
        compose = "services:\n  a:\n    image: x\n    depends_on:\n      - db\n"
        assert stack(tmp_path, compose) == [
            f"{P}:5: service 'a' depends on unknown service 'db'; "
            "define it in this file or remove the dependency (a stack is one compose file: "
            "merge an overlay into its base with docker compose -f base.yml -f overlay.yml config)"
        ]

    def test_cycle_is_named(self, tmp_path: Path) -> None:
        """A depends_on cycle is reported once, naming each service on it."""
        compose = """\
            services:
              a: {image: x, depends_on: [b]}
              b: {image: x, depends_on: {c: {condition: service_healthy}}}
              c: {image: x, depends_on: [a]}
            """
        assert stack(tmp_path, compose) == [
            f"{P}:2: depends_on cycle a -> b -> c -> a; remove one of these dependencies"
        ]


class TestPaths:
    def test_env_file_escaping_the_repository_is_refused(self, tmp_path: Path) -> None:
        """env_file ../../.. is outside the repository and is never read."""
        compose = "services:\n  a:\n    image: x\n    env_file: ../../../etc/environment\n"
        assert stack(tmp_path, compose) == [
            f"{P}:4: env_file '../../../etc/environment' leaves the repository; keep it inside"
        ]

    def test_missing_env_file_is_reported(self, tmp_path: Path) -> None:
        """An env_file that is not in the repository is reported."""
        compose = "services:\n  a:\n    image: x\n    env_file: [app.env]\n"
        assert stack(tmp_path, compose) == [
            f"{P}:4: env_file 'app.env' does not exist in the repository; add it"
        ]

    def test_bind_source_escaping_the_repository_is_refused(self, tmp_path: Path) -> None:
        """A relative bind source climbing out of the repository is reported at its item."""
        compose = (
            "services:\n  a:\n    image: x\n    volumes:\n      - ./ok:/ok\n"
            "      - ../../../:/host\n"
        )
        assert stack(tmp_path, compose) == [
            f"{P}:6: bind source '../../../' leaves the repository; keep it inside"
        ]

    def test_symlinked_config_to_etc_is_refused(self, tmp_path: Path) -> None:
        """A config file that is a symlink to /etc is 'outside' and never read."""
        compose = "services:\n  a: {image: x, configs: [c]}\nconfigs:\n  c:\n    file: ./passwd\n"
        (tmp_path / "stacks/app").mkdir(parents=True)
        (tmp_path / "stacks/app/passwd").symlink_to("/etc/passwd")
        assert stack(tmp_path, compose) == [
            f"{P}:4: config 'c' file './passwd' is a symlink leading outside the repository"
        ]

    def test_symlinked_bind_source_to_etc_is_refused(self, tmp_path: Path) -> None:
        """A bind source that is a symlink leaving the repository is refused."""
        compose = "services:\n  a:\n    image: x\n    volumes: ['./etc:/etc-host:ro']\n"
        (tmp_path / "stacks/app").mkdir(parents=True)
        (tmp_path / "stacks/app/etc").symlink_to("/etc")
        assert stack(tmp_path, compose) == [
            f"{P}:4: bind source './etc' is a symlink leading outside the repository"
        ]

    def test_missing_config_file_is_reported(self, tmp_path: Path) -> None:
        """A top-level config whose file is absent from the repository is reported."""
        compose = "services:\n  a: {image: x}\nconfigs:\n  c: {file: ./nope.conf}\n"
        assert stack(tmp_path, compose) == [
            f"{P}:4: config 'c': file './nope.conf' does not exist in the repository"
        ]

    def test_secret_from_repository_file_is_refused(self, tmp_path: Path) -> None:
        """Secrets never come from plaintext files in the repository."""
        compose = "services:\n  a: {image: x, secrets: [pw]}\nsecrets:\n  pw:\n    file: ./pw.txt\n"
        assert stack(tmp_path, compose, {"stacks/app/pw.txt": "hunter2"}) == [
            f"{P}:5: secret 'pw': secrets must come from an absolute path on the device, "
            "not a plaintext file in the repository"
        ]

    def test_undefined_references_are_reported(self, tmp_path: Path) -> None:
        """Named volumes, networks, configs and secrets must be declared at top level."""
        compose = """\
            services:
              a:
                image: x
                volumes: ["store:/data"]
                networks: [backend]
                secrets: [token]
            """
        assert stack(tmp_path, compose) == [
            f"{P}:4: volume 'store' is not defined under top-level volumes; define it, "
            "or write ./store for a folder of the repository",
            f"{P}:5: service 'a' uses network 'backend', which is not defined under "
            "top-level networks; define it",
            f"{P}:6: service 'a' uses secret 'token', which is not defined under "
            "top-level secrets; define it",
        ]


class TestValues:
    @pytest.mark.parametrize(
        ("line", "expected"),
        [
            (
                "restart: sometimes",
                "restart 'sometimes' is not one of no, always, unless-stopped, on-failure[:N]",
            ),
            ("stop_grace_period: 10", "stop_grace_period: 10 has no unit; write e.g. 10s"),
            ("mem_limit: lots", "mem_limit: 'lots' is not a size; write e.g. 512m or 1g"),
            ("privileged: yes", "privileged: 'yes' is not a boolean; write true or false"),
            (
                "healthcheck: {interval: 5 s}",
                "interval: '5 s' is not a duration; write e.g. 90s, 1m30s or 2h",
            ),
            (
                "ports: ['80:80:80']",
                "port '80:80:80' is not [ip:][host:]container[/tcp|udp|sctp]; e.g. 8080:80",
            ),
            ("ports: ['70000:80']", "port '70000:80': ports must be 1-65535 and ranges ascending"),
            (
                "ports: ['80/http']",
                "port '80/http' is not [ip:][host:]container[/tcp|udp|sctp]; e.g. 8080:80",
            ),
        ],
    )
    def test_malformed_values_are_reported_at_their_line(
        self, tmp_path: Path, line: str, expected: str
    ) -> None:
        """Restart policies, durations, sizes, booleans and ports are checked statically."""
        compose = f"services:\n  a:\n    image: x\n    {line}\n"
        assert stack(tmp_path, compose) == [f"{P}:4: {expected}"]

    def test_values_with_variables_are_left_to_render(self, tmp_path: Path) -> None:
        """A value containing ${ is only known per device and is not checked here."""
        compose = """\
            services:
              a:
                image: x
                restart: ${RESTART}
                ports: ["${PORT:-80}:80", "127.0.0.1::81", "[::1]:8080:80/udp", 8081]
                stop_grace_period: ${GRACE:-10s}
                privileged: ${PRIV:-false}
                volumes: ["${DATA}:/data", "./data:/data2"]
            """
        assert stack(tmp_path, compose) == []


class TestHostileInput:
    def test_alias_bomb_is_refused_quickly(self, tmp_path: Path) -> None:
        """A billion-laughs document is refused without expanding it (acceptance: < 2 s)."""
        lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        for i in range(1, 10):
            prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
            lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
        bomb = "\n".join(lines) + "\n"
        started = time.perf_counter()
        found = stack(tmp_path, "services: {a: {image: x}}\n", {"devices/d1.yaml": bomb})
        elapsed = time.perf_counter() - started
        print(f"alias bomb refused in {elapsed:.3f}s")
        assert found == [
            "devices/d1.yaml: document expands to more than 200000 nodes (alias bomb?); "
            "use fewer anchors and aliases"
        ]
        assert elapsed < 2.0

    def test_huge_manifest_is_refused_without_reading_it(self, tmp_path: Path) -> None:
        """A 40 MB manifest is refused by its size (acceptance: < 2 s)."""
        big = tmp_path / "devices/d1.yaml"
        big.parent.mkdir(parents=True)
        with big.open("w") as out:
            out.write("variables:\n")
            chunk = "".join(f"  V{i}: {'x' * 60}\n" for i in range(1000))
            while out.tell() < 40 * 1024 * 1024:
                out.write(chunk)
        started = time.perf_counter()
        found = stack(tmp_path, "services: {a: {image: x}}\n")
        elapsed = time.perf_counter() - started
        print(f"40 MB manifest refused in {elapsed:.3f}s")
        assert found == ["devices/d1.yaml: file is larger than 1048576 bytes; split it"]
        assert elapsed < 2.0

    def test_symlinked_device_file_to_etc_is_never_read(self, tmp_path: Path) -> None:
        """A device manifest that is a symlink out of the repository is refused unread."""
        (tmp_path / "devices").mkdir()
        (tmp_path / "devices/d1.yaml").symlink_to("/etc/hostname")
        found = stack(tmp_path, "services: {a: {image: x}}\n")
        assert found == [
            "devices/d1.yaml: is a symlink leading outside the repository; fleetgate never reads it"
        ]

    def test_symlinked_stack_folder_is_never_read(self, tmp_path: Path) -> None:
        """A stack folder that is a symlink out of the repository is refused unread."""
        outside = tmp_path / "outside"
        (outside / "evil").mkdir(parents=True)
        (outside / "evil/compose.yaml").write_text("services: {a: {image: x}}\n")
        root = tmp_path / "repo"
        (root / "stacks").mkdir(parents=True)
        (root / "stacks/evil").symlink_to(outside / "evil")
        found = stack(root, "services: {a: {image: x}}\n")
        assert found == [
            "stacks/evil: is a symlink leading outside the repository; fleetgate never reads it"
        ]


class TestEveryProblemAtOnce:
    def test_schema_error_does_not_hide_value_errors(self, tmp_path: Path) -> None:
        """Unknown and unsupported keys, a bad port and a bad dependency: all in one run."""
        compose = """\
            services:
              web:
                build: .
                image: x
                ports: ["99999:80"]
                restrat: always
                depends_on: [nope]
            """
        assert stack(tmp_path, compose) == [
            f"{P}:3: `build` is not supported by fleetgate: build the image in CI and reference "
            "it by tag",
            f"{P}:5: port '99999:80': ports must be 1-65535 and ranges ascending",
            f"{P}:6: unknown key 'restrat'; did you mean 'restart'?",
            f"{P}:7: service 'web' depends on unknown service 'nope'; "
            "define it in this file or remove the dependency (a stack is one compose file: "
            "merge an overlay into its base with docker compose -f base.yml -f overlay.yml config)",
        ]

    @pytest.mark.parametrize(
        "compose",
        [
            "services: 5\n",
            "services:\n  web: [1, 2]\n",
            "services:\n  web:\n    ports: 5\n    foo: 1\n",
            "services:\n  web:\n    depends_on: 7\n    healthcheck: [1]\n    foo: 1\n",
            "foo: 1\nservices:\n  web:\n    secrets: [{source: 1}]\n    restart: [1]\n",
        ],
    )
    def test_badly_shaped_file_gives_findings_not_a_crash(
        self, tmp_path: Path, compose: str
    ) -> None:
        """A document of the wrong shape is reported by the schema and never crashes the checks."""
        found = stack(tmp_path, compose)
        assert found and all(f.startswith(P) for f in found)
