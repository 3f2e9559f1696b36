"""Static checks of one stack's Compose file, before interpolation.

These run once per stack (not per device) on a schema-valid document and catch what a
schema cannot: references between services, cycles, paths leaving the repository,
secrets stored in the repository, and malformed values (restart policies, ports,
durations, sizes). A value with a variable (``${X}``, ``$X``) is skipped here: it is only known per
device, and render checks it after interpolation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from reconciler.errors import Finding
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.yamlio import LineDict, LineList
from reconciler.model import StackManifest
from reconciler.render.compose.env import EnvFileError, parse_env_file, resolve_env_file
from reconciler.units import parse_bytes, parse_duration

RESTART = re.compile(r"no|always|unless-stopped|on-failure(?::\d+)?")
_PORT = re.compile(
    r"(?:(?:(?P<ip>\[[0-9a-fA-F:.]*\]|\d{1,3}(?:\.\d{1,3}){3}|[0-9a-fA-F:]*::[0-9a-fA-F:]*):)?"
    r"(?P<host>\d+(?:-\d+)?)?:)?(?P<container>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp|sctp))?"
)
_TEMPLATED = re.compile(r"\$(?:\{|[_A-Za-z])")
SECRET_IN_REPO = (
    "secrets must come from an absolute path on the device, not a plaintext file in the repository"
)


def _entries(value: Any) -> Iterator[tuple[str, int | None, Any]]:
    """``(name, line, body)`` of a list-or-mapping Compose field."""
    if isinstance(value, LineList):
        for index, item in enumerate(value):
            yield (item if isinstance(item, str) else ""), value.line_of(index), item
    elif isinstance(value, LineDict):
        for key, item in value.items():
            yield key, value.line_of(key), item


def _range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def port_problem(value: Any) -> str | None:
    """Why a short-syntax port is malformed, or ``None``."""
    if isinstance(value, int):
        return None if 1 <= value <= 65535 else f"port {value} is outside 1-65535"
    match = _PORT.fullmatch(str(value))
    if match is None:
        return f"port {value!r} is not [ip:][host:]container[/tcp|udp|sctp]; e.g. 8080:80"
    container = _range(match["container"])
    spans = [container]
    if match["host"]:
        host = _range(match["host"])
        spans.append(host)
        if container[1] != container[0] and host[1] - host[0] != container[1] - container[0]:
            return f"port {value!r}: host and container ranges differ in length"
    for low, high in spans:
        if not 1 <= low <= high <= 65535:
            return f"port {value!r}: ports must be 1-65535 and ranges ascending"
    return None


class _Checker:
    def __init__(self, tree: RepoTree, stack: StackManifest) -> None:
        self.tree = tree
        self.doc: LineDict = stack.compose  # type: ignore[assignment]  # loaded by yamlio
        self.path = stack.compose_path
        self.folder = stack.compose_path.rsplit("/", 1)[0]
        self.findings: list[Finding] = []

    def add(self, line: int | None, message: str) -> None:
        self.findings.append(Finding(self.path, line, message))

    def repo_path(self, line: int | None, what: str, source: str) -> str | None:
        """Check a relative path stays in the repository; the normalized path or None."""
        normal = self.tree.normalize(source, self.folder)
        if normal is None:
            self.add(line, f"{what} {source!r} leaves the repository; keep it inside")
            return None
        if self.tree.kind(normal) == "outside":
            self.add(line, f"{what} {source!r} is a symlink leading outside the repository")
            return None
        return normal

    def run(self) -> list[Finding]:
        services: LineDict = self.doc["services"]
        top: dict[str, Any] = {
            k: self.doc.get(k) or LineDict() for k in ("volumes", "networks", "configs", "secrets")
        }
        for name, body in top["configs"].items():
            line = top["configs"].line_of(name)
            self.check_config_file(line, name, body["file"])
        for name, body in top["secrets"].items():
            line = body.line_of("file")
            file = body["file"]
            if not templated(file) and not file.startswith("/"):
                self.add(line, f"secret {name!r}: {SECRET_IN_REPO}")
        for name, svc in services.items():
            self.check_service(name, svc, services, top)
        self.check_cycles(services)
        return self.findings

    def check_config_file(self, line: int | None, name: str, file: str) -> None:
        if templated(file):
            return
        if file.startswith("/"):
            self.add(
                line,
                f"config {name!r}: file must be a path of the repository, relative "
                "to the stack folder; mount files of the device as secrets or bind mounts",
            )
            return
        normal = self.repo_path(line, f"config {name!r} file", file)
        if normal is not None and self.tree.kind(normal) == "missing":
            self.add(line, f"config {name!r}: file {file!r} does not exist in the repository")

    def check_service(self, name: str, svc: LineDict, services: LineDict, top: Any) -> None:
        for dep, line, spec in _entries(svc.get("depends_on")):
            optional = isinstance(spec, dict) and spec.get("required") in (False, "false")
            if dep not in services and not optional:
                self.add(
                    line,
                    f"service {name!r} depends on unknown service {dep!r}; "
                    "define it in this file or remove the dependency (a stack is one "
                    "compose file: merge an overlay into its base with docker compose "
                    "-f base.yml -f overlay.yml config)",
                )
        env_files = svc.get("env_file")
        for entry in [env_files] if isinstance(env_files, str) else env_files or ():
            file = entry if isinstance(entry, str) else entry["path"]
            if templated(file):
                continue
            line = svc.line_of("env_file")
            normal = self.repo_path(line, "env_file", file)
            optional = isinstance(entry, LineDict) and entry.get("required") is False
            if normal is not None and not optional and self.tree.kind(normal) != "file":
                self.add(line, f"env_file {file!r} does not exist in the repository; add it")
        for ref, line, _ in _entries(svc.get("networks")):
            if ref and ref != "default" and ref not in top["networks"]:
                self.add(
                    line,
                    f"service {name!r} uses network {ref!r}, which is not defined "
                    "under top-level networks; define it",
                )
        for kind in ("configs", "secrets"):
            for index, item in enumerate(svc.get(kind) or ()):
                ref = item if isinstance(item, str) else item["source"]
                if ref not in top[kind]:
                    self.add(
                        svc[kind].line_of(index),
                        f"service {name!r} uses {kind[:-1]} "
                        f"{ref!r}, which is not defined under top-level {kind}; define it",
                    )
        volumes = svc.get("volumes") or LineList()
        for index, item in enumerate(volumes):
            self.check_volume(volumes.line_of(index), item, top["volumes"])
        restart = svc.get("restart")
        if isinstance(restart, str) and not templated(restart) and not RESTART.fullmatch(restart):
            self.add(
                svc.line_of("restart"),
                f"restart {restart!r} is not one of no, always, unless-stopped, on-failure[:N]",
            )
        ports = svc.get("ports") or LineList()
        for index, item in enumerate(ports):
            problem = self.port_item(item)
            if problem:
                self.add(ports.line_of(index), problem)
        health = svc.get("healthcheck") or LineDict()
        for key in ("interval", "timeout", "start_period", "start_interval"):
            self.value(health, key, parse_duration)
        self.value(svc, "stop_grace_period", parse_duration)
        for key in ("privileged", "read_only", "init"):
            self.value(svc, key, _boolean)
        self.value(svc, "mem_limit", parse_bytes)
        self.value(svc, "shm_size", parse_bytes)
        limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or LineDict()
        self.value(limits, "memory", parse_bytes)

    def port_item(self, item: Any) -> str | None:
        if isinstance(item, LineDict):
            for key in ("target", "published"):
                value = item.get(key)
                if value is not None and not templated(str(value)):
                    problem = port_problem(value if isinstance(value, int) else str(value))
                    if problem:
                        return problem
            return None
        return None if templated(str(item)) else port_problem(item)

    def value(self, mapping: Any, key: str, parse: Any) -> None:
        if not isinstance(mapping, LineDict) or key not in mapping:
            return
        raw = mapping[key]
        if isinstance(raw, str) and templated(raw):
            return
        try:
            parse(raw)
        except ValueError as e:
            self.add(mapping.line_of(key), f"{key}: {e}")

    def check_volume(self, line: int | None, item: Any, declared: Any) -> None:
        if isinstance(item, str):
            source, sep, _ = item.partition(":")
            kind = "bind" if source[:1] in (".", "/", "~") else "volume"
            if not sep:
                return  # an anonymous volume: only a container path
        else:
            source, kind = item.get("source", ""), item.get("type", "volume")
        if not source or templated(source):
            return
        if kind == "volume" and source not in declared:
            self.add(
                line,
                f"volume {source!r} is not defined under top-level volumes; "
                "define it, or write ./" + source + " for a folder of the repository",
            )
        elif kind == "bind" and source.startswith("~"):
            self.add(
                line, f"bind source {source!r}: ~ is not expanded on devices; use an absolute path"
            )
        elif kind == "bind" and not source.startswith("/"):
            self.repo_path(line, "bind source", source)

    def check_cycles(self, services: LineDict) -> None:
        graph = {
            n: [d for d, _, _ in _entries(s.get("depends_on")) if d in services]
            for n, s in services.items()
        }
        state: dict[str, int] = {}  # 1 visiting, 2 done
        reported: set[frozenset[str]] = set()

        def visit(node: str, trail: list[str]) -> None:
            state[node] = 1
            trail.append(node)
            for dep in graph[node]:
                if state.get(dep) == 1:
                    cycle = [*trail[trail.index(dep) :], dep]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        line = services[cycle[0]].line_of("depends_on")
                        self.add(
                            line,
                            f"depends_on cycle {' -> '.join(cycle)}; "
                            "remove one of these dependencies",
                        )
                elif dep not in state:
                    visit(dep, trail)
            trail.pop()
            state[node] = 2

        for node in sorted(graph):
            if node not in state:
                visit(node, [])


def templated(text: str) -> bool:
    """Whether ``text`` refers to a variable (``${X}`` or ``$X``): known only per device."""
    return _TEMPLATED.search(text.replace("$$", "")) is not None


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"{value!r} is not a boolean; write true or false")


def check_stack(tree: RepoTree, stack: StackManifest) -> list[Finding]:
    """Every static problem of a schema-valid stack, at its compose file line."""
    return _Checker(tree, stack).run()


def dotenv_defaults(tree: RepoTree, compose_path: str) -> tuple[dict[str, str], list[Finding]]:
    """The ``.env`` beside a compose file: interpolation defaults, as Compose reads them.

    Compose reads ``.env`` in the project folder for interpolation only (it never
    reaches a container's environment unless ``env_file`` names it). Here it sits
    under every fleet variable and under ``stack.yaml`` ``variables``; see
    docs/repository-format.md for the whole order. A malformed line is a finding.
    """
    folder = compose_path.rpartition("/")[0]
    path = f"{folder}/.env"
    if tree.kind(path) != "file":
        return {}, []
    try:
        text = tree.read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        return {}, [Finding(path, None, "is not UTF-8 text; save it as UTF-8")]
    try:
        return resolve_env_file(parse_env_file(text), {}), []
    except EnvFileError as e:
        return {}, [Finding(path, e.line, str(e))]


def seed_paths(
    tree: RepoTree, folder: str, settings: Any, path: str
) -> tuple[list[str], list[Finding]]:
    """stack.yaml ``seed:``: repository paths (files or folders) inside the stack folder.

    Each entry is relative to the stack folder and must exist in the repository: a seed
    is copied into the data directory once and kept from then on (docs/repository-format.md).
    """
    items = settings.get("seed") if isinstance(settings, LineDict) else None
    if not isinstance(items, LineList):
        return [], []
    out: list[str] = []
    findings: list[Finding] = []
    for index, item in enumerate(items):
        line = items.line_of(index)
        rel = tree.normalize(str(item), folder)
        if rel is None or not (rel + "/").startswith(folder + "/") or rel == folder:
            message = (
                f"seed: {str(item)!r} is not inside {folder}/; list a path in the stack folder"
            )
            findings.append(Finding(path, line, message))
        elif tree.kind(rel) not in ("file", "dir"):
            message = (
                f"seed: {str(item)!r} is not in the repository; commit it as {rel} "
                "or remove it from seed"
            )
            findings.append(Finding(path, line, message))
        else:
            out.append(rel)
    return out, findings
