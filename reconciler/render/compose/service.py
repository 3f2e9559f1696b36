"""Normalize one Compose *service* into a :class:`ServiceSpec` (see ``compose.py``).

Each function reads one area of the service mapping and reports mistakes as findings
naming ``services.<name>.<key>`` and the line; nothing here knows about other devices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from operator import attrgetter
from typing import Any, Literal, cast

from reconciler.errors import Finding
from reconciler.manifests.tree import TreeEscape
from reconciler.model import (
    Dependency,
    NetworkAttachment,
    PortBinding,
    PullPolicy,
    ServiceSpec,
)
from reconciler.render.compose import process as proc
from reconciler.render.compose import resources as res
from reconciler.render.compose.context import (
    Issues,
    Reader,
    ShellOperator,
    StackContext,
    line_of,
    scalar_text,
    shell_words,
)
from reconciler.render.compose.env import EnvFileError, parse_env_file, resolve_env_file
from reconciler.render.compose.mounts import (
    MountAccumulator,
    MountReader,
    tmpfs_entries,
    volume_name,
)
from reconciler.render.compose.ports import normalize_ports

SERVICE_KEYS = frozenset(
    (
        *("image", "command", "entrypoint", "environment", "env_file", "ports", "volumes"),
        *("restart", "labels", "networks", "network_mode", "devices", "privileged", "cap_add"),
        *("cap_drop", "user", "working_dir", "hostname", "init", "read_only", "shm_size"),
        *("mem_limit", "mem_reservation", "cpus", "deploy", "gpus", "ulimits", "extra_hosts"),
        *("logging", "healthcheck", "stop_signal", "stop_grace_period", "depends_on"),
        *("container_name", "platform", "pull_policy", "tmpfs", "configs", "secrets"),
        *("expose", "links", "tty", "stdin_open", "dns", "dns_search", "security_opt", "pid"),
        *("group_add", "profiles"),
    )
)
_PULL: dict[str, PullPolicy] = {
    "always": "always",
    "never": "never",
    "missing": "missing",
    "if_not_present": "missing",
}
_CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
Condition = Literal["service_started", "service_healthy", "service_completed_successfully"]


def _mapping(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _command(r: Reader, key: str) -> tuple[str, ...] | None:
    """String form is split like compose-go's shellwords; a list is taken as is."""
    value = r.node.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shell_words(value)
        except ShellOperator as e:
            r.bad(
                key,
                f"uses a shell operator {e.operator!r} that Compose would cut off here; "
                "write it as a list: [sh, -c, '...']",
            )
        except ValueError as e:
            r.bad(key, f"cannot split {value!r} ({e}); use the list form")
        return None
    if isinstance(value, list) and not any(isinstance(v, dict | list) for v in value):
        return tuple(scalar_text(v) for v in value)
    r.bad(key, "must be a string or a list of strings")
    return None


def _environment(ctx: StackContext, r: Reader) -> tuple[tuple[str, str], ...]:
    env: dict[str, str] = {}
    files = r.node.get("env_file")
    entries = [files] if isinstance(files, str | dict) else (files or [])
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        required = True
        path = entry
        if isinstance(entry, dict):
            required = entry.get("required", True) is not False
            path = entry.get("path")
        line = line_of(files, i, r.line("env_file"))
        if not isinstance(path, str):
            r.issues.add(line, f"{r.where}.env_file", "must be a path or {path, required}")
            continue
        rel = ctx.tree.normalize(path, ctx.stack_dir)
        if rel is None or ctx.tree.kind(rel) != "file":
            if required or rel is None:
                r.issues.add(
                    line,
                    f"{r.where}.env_file",
                    f"{path!r} is not a file in the repository; add it",
                )
            continue
        try:
            text = ctx.tree.read_bytes(rel).decode("utf-8")
            env.update(resolve_env_file(parse_env_file(text), ctx.variables))
        except EnvFileError as e:
            r.issues.findings.append(Finding(rel, e.line, str(e)))
        except (OSError, UnicodeDecodeError, TreeEscape):
            r.issues.add(line, f"{r.where}.env_file", f"cannot read {rel} as UTF-8 text")
    for name, value in r.pairs("environment"):
        if value is None:
            if name in ctx.variables:
                env[name] = ctx.variables[name]
            else:
                env.pop(name, None)
        else:
            env[name] = value
    return tuple(sorted(env.items()))


def _networks(
    ctx: StackContext, r: Reader, service: str, declared: Mapping[str, Any], used: dict[str, None]
) -> tuple[tuple[NetworkAttachment, ...], str | None]:
    mode = r.str_("network_mode")
    value = r.node.get("networks")
    if mode is not None:
        if value:
            r.bad("network_mode", "cannot be combined with networks; keep one")
        if mode.startswith("service:"):
            return (), "container:" + mode  # resolved to the container name by the caller
        if mode in ("host", "none", "bridge") or mode.startswith("container:"):
            return (), mode
        r.bad("network_mode", f"{mode!r} is not host, none, bridge, service:NAME or container:NAME")
        return (), None
    items: list[tuple[str, Any]]
    if value is None:
        items = [("default", None)]
    elif isinstance(value, list):
        items = [(scalar_text(v), None) for v in value]
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        r.bad("networks", "must be a list or a mapping of network names")
        return (), None
    out: list[NetworkAttachment] = []
    for key, spec in sorted(items, key=lambda kv: str(kv[0])):
        if key != "default" and key not in declared:
            r.bad("networks", f"network {key!r} is not declared; add it under top-level networks")
            continue
        used[key] = None
        aliases: dict[str, None] = {service: None}
        ipv4: str | None = None
        if isinstance(spec, dict):
            nr = Reader(spec, f"{r.where}.networks.{key}", r.issues)
            aliases.update(dict.fromkeys(nr.str_list("aliases")))
            ipv4 = nr.str_("ipv4_address")
        out.append(NetworkAttachment(volume_name(key, declared, ctx.prefix), tuple(aliases), ipv4))
    return tuple(out), None


def _depends_on(r: Reader, services: Mapping[str, Any]) -> tuple[Dependency, ...]:
    value = r.node.get("depends_on")
    if value is None:
        return ()
    items: list[tuple[str, Any]]
    if isinstance(value, list):
        items = [(scalar_text(v), None) for v in value]
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        r.bad("depends_on", "must be a list or a mapping of service names")
        return ()
    out: list[Dependency] = []
    for name, spec in items:
        if name not in services:
            if isinstance(spec, dict) and spec.get("required") in (False, "false"):
                continue  # `required: false`: Compose ignores a dependency it cannot find
            r.bad("depends_on", f"service {name!r} is not defined in this stack")
            continue
        condition = "service_started"
        if isinstance(spec, dict) and spec.get("condition") is not None:
            condition = scalar_text(spec["condition"])
            if condition not in _CONDITIONS:
                r.bad(
                    "depends_on", f"condition {condition!r} is not one of {', '.join(_CONDITIONS)}"
                )
                continue
        out.append(Dependency(name, cast(Condition, condition)))
    return tuple(sorted(out, key=lambda d: d.service))


def _image(ctx: StackContext, r: Reader, name: str) -> str:
    image = r.str_("image")
    if not image:
        r.issues.add(getattr(r.node, "line", None), r.where, "image is required")
        return ""
    return image


def _container_name(ctx: StackContext, r: Reader, name: str) -> str:
    return r.str_("container_name") or ctx.prefix + name


def _labels(ctx: StackContext, r: Reader, name: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v or "") for k, v in r.pairs("labels")))


def _ports(ctx: StackContext, r: Reader, name: str) -> tuple[PortBinding, ...]:
    return normalize_ports(r.node.get("ports"), f"{r.where}.ports", r.line("ports"), r.issues)


def _text(key: str) -> Callable[[StackContext, Reader, str], Any]:
    return lambda ctx, r, name: r.str_(key)


_LOCAL: dict[str, Callable[[StackContext, Reader, str], Any]] = {
    "image": _image,
    "container_name": _container_name,
    "command": lambda ctx, r, name: _command(r, "command"),
    "entrypoint": lambda ctx, r, name: _command(r, "entrypoint"),
    "environment": lambda ctx, r, name: _environment(ctx, r),
    "labels": _labels,
    "ports": _ports,
    **{key: _text(key) for key in ("platform", "user", "working_dir", "hostname", "stop_signal")},
}
"""Service keys that each make exactly one same-named :class:`ServiceSpec` field and
nothing else (no mounts, networks or other fields read them): ``respecify`` recomputes
only these. ``normalize_service`` calls the same functions, so the two cannot drift."""
_FIELD_INDEX = {f.name: i for i, f in enumerate(fields(ServiceSpec))}
_spec_args = attrgetter(*_FIELD_INDEX)


def respecify(
    ctx: StackContext,
    name: str,
    node: Any,
    base_node: Any,
    base: ServiceSpec,
    *,
    also: tuple[str, ...] = (),
) -> ServiceSpec | None:
    """``base`` (normalized from ``base_node`` with the same context, without findings)
    re-derived for ``node``; ``None`` unless they differ only in ``_LOCAL`` keys and
    those normalize without findings (the caller then normalizes in full). Keys in
    ``also`` are recomputed even if equal (``environment`` when bare names' values differ).

    Without ``env_file`` only: its files read the variables. Unchanged subtrees of an
    interpolated document are shared objects, so the comparison is mostly by identity.
    """
    if not isinstance(node, dict) or not isinstance(base_node, dict) or "env_file" in node:
        return None
    changed = [k for k, v in node.items() if v is not base_node.get(k) and v != base_node.get(k)]
    changed += [k for k in base_node if k not in node and base_node[k] is not None]
    changed += [k for k in also if k not in changed]
    if any(k not in _LOCAL for k in changed):
        return None
    issues = Issues(ctx.compose_path)
    r = Reader(node, f"services.{name}", issues)
    args = list(_spec_args(base))
    for key in changed:
        args[_FIELD_INDEX[key]] = _LOCAL[key](ctx, r, name)
    return None if issues.findings else ServiceSpec(*args)


def normalize_service(
    ctx: StackContext,
    name: str,
    node: Any,
    *,
    doc: Mapping[str, Any],
    issues: Issues,
    acc: MountAccumulator,
    used_networks: dict[str, None],
) -> ServiceSpec | None:
    where = f"services.{name}"
    if not isinstance(node, dict):
        issues.add(line_of(doc.get("services"), name), where, "must be a mapping")
        return None
    r = Reader(node, where, issues)
    for key in node:
        if key not in SERVICE_KEYS and not str(key).startswith("x-"):
            r.bad(str(key), "is not supported by fleetgate; remove it (see the Compose subset)")
    image = _image(ctx, r, name)
    pull = r.str_("pull_policy") or "missing"
    if pull not in _PULL:
        r.bad("pull_policy", f"{pull!r} is not supported; use always, never or missing")
    mem, mem_res, nano, requests = res.limits(r)
    networks, mode = _networks(ctx, r, name, _mapping(doc, "networks"), used_networks)
    service_acc = MountAccumulator()
    mounts = MountReader(ctx, issues, service_acc, doc)
    mounts.volumes(node.get("volumes"), f"{where}.volumes", r.line("volumes"))
    for kind in ("config", "secret"):
        mounts.files(kind, node.get(f"{kind}s"), f"{where}.{kind}s", r.line(f"{kind}s"))
    targets: dict[str, None] = {}
    for mount in service_acc.mounts:
        if mount.target in targets:
            r.bad("volumes", f"two mounts at {mount.target}; keep one")
        targets[mount.target] = None
    acc.config_files.update(service_acc.config_files)
    acc.data_dirs.update(service_acc.data_dirs)
    acc.volumes.update(service_acc.volumes)
    return ServiceSpec(
        device=ctx.device,
        stack=ctx.stack,
        service=name,
        container_name=_container_name(ctx, r, name),
        image=image,
        platform=r.str_("platform"),
        pull_policy=_PULL.get(pull, "missing"),
        command=_command(r, "command"),
        entrypoint=_command(r, "entrypoint"),
        environment=_environment(ctx, r),
        labels=_labels(ctx, r, name),
        ports=_ports(ctx, r, name),
        mounts=tuple(sorted(service_acc.mounts, key=lambda m: m.target)),
        tmpfs=tuple(
            sorted(
                (
                    *tmpfs_entries(node.get("tmpfs"), f"{where}.tmpfs", r.line("tmpfs"), issues),
                    *mounts.tmpfs,
                )
            )
        ),
        networks=networks,
        network_mode=mode,
        devices=res.devices(r),
        device_requests=requests,
        privileged=bool(r.bool_("privileged")),
        cap_add=r.str_list("cap_add"),
        cap_drop=r.str_list("cap_drop"),
        user=r.str_("user"),
        working_dir=r.str_("working_dir"),
        hostname=r.str_("hostname"),
        init=r.bool_("init"),
        read_only=bool(r.bool_("read_only")),
        restart=res.restart_policy(r),
        healthcheck=res.healthcheck(r),
        logging=res.logging(r),
        mem_limit=mem,
        mem_reservation=mem_res,
        nano_cpus=nano,
        shm_size=r.size("shm_size"),
        ulimits=res.ulimits(r),
        extra_hosts=res.extra_hosts(r),
        stop_signal=r.str_("stop_signal"),
        stop_grace_period=r.duration("stop_grace_period"),
        expose=proc.expose(r),
        tty=bool(r.bool_("tty")),
        stdin_open=bool(r.bool_("stdin_open")),
        dns=proc.strings(r, "dns"),
        dns_search=proc.strings(r, "dns_search"),
        security_opt=proc.strings(r, "security_opt"),
        pid=proc.pid(r),
        group_add=proc.group_add(r),
        depends_on=_depends_on(r, _mapping(doc, "services")),
    )
