"""Normalize one *interpolated* Compose document into engine-ready specs for one device.

This is the Compose semantics fleetgate implements itself (DESIGN §1 "Compose subset"),
following ``docker compose`` 2.40 field by field so the same file creates the same
containers. Names follow the fleet conventions: container ``{device}_{stack}_{service}``
unless ``container_name`` is set; networks and volumes ``{device}_{stack}_{key}`` unless
their top-level entry sets ``name:`` or ``external: true``. A service without
``networks``/``network_mode`` joins the stack's ``default`` network; every attachment
carries the service name as alias so services reach each other by name.

Every key outside the supported subset is a finding naming the key (never silently
ignored); ``x-*`` extension keys and the obsolete top-level ``version``/``name`` are
accepted as Compose accepts them. The result is unhashed and unordered beyond
declaration: render orders services and computes config hashes.

``service_memo`` (optional) reuses the normalization of a service whose interpolated
mapping, the document's top-level sections, the set of service names and the values
of its bare ``environment`` names are unchanged since an earlier call *with the same
context* (caller's duty: one memo per stack manifest, device-as and state dir). A
service with ``env_file`` is never memoized (its files may read any variable).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.errors import Finding
from reconciler.manifests.yamlio import LineDict
from reconciler.model import ConfigFile, NetworkSpec, ServiceSpec, VolumeSpec
from reconciler.render.compose import process as proc
from reconciler.render.compose.context import Issues, StackContext, is_true, line_of, scalar_text
from reconciler.render.compose.mounts import MountAccumulator, is_external, volume_name
from reconciler.render.compose.service import normalize_service, respecify

TOP_KEYS = frozenset({"services", "networks", "volumes", "configs", "secrets", "name", "version"})


@dataclass(frozen=True, slots=True)
class NormalizedStack:
    """A stack's specs on one device (services unhashed, in declaration order)."""

    services: tuple[ServiceSpec, ...]
    networks: tuple[NetworkSpec, ...]
    volumes: tuple[VolumeSpec, ...]
    config_files: tuple[ConfigFile, ...]
    data_dirs: tuple[str, ...]
    findings: tuple[Finding, ...]
    seed_files: tuple[ConfigFile, ...] = ()  # repository files copied into data dirs


def _mapping(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class ServiceResult:
    """One service's normalization with everything it contributes to the stack."""

    spec: ServiceSpec | None
    findings: tuple[Finding, ...]
    config_files: tuple[tuple[str, ConfigFile], ...]
    data_dirs: tuple[str, ...]
    volumes: tuple[str, ...]  # compose keys of the named volumes it uses
    networks: tuple[str, ...]  # compose keys of the networks it joins


_Base = tuple[Any, str, ServiceResult]  # interpolated mapping, its lookups, its result


@dataclass(slots=True)
class ServiceMemo:
    """Normalized services of one stack manifest for one device-as and state dir.

    ``results`` by (name, interpolated mapping, context); ``bases`` per (name, context)
    the first clean result, its mapping and lookups, from which ``respecify`` derives a service
    that differs in a few self-contained keys (say one per-device environment value).
    """

    results: dict[tuple[str, str, str], ServiceResult] = field(default_factory=dict)
    bases: dict[tuple[str, str], _Base] = field(default_factory=dict)


def _fingerprint(value: Any) -> str | None:
    """Canonical text of a YAML value (``None`` if it has non-string keys)."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except TypeError:
        return None


def _lookups(node: Any, variables: Mapping[str, str]) -> str | None:
    """The variables a service reads itself (bare environment names), as key text.

    ``None`` (not memoizable) for a service with ``env_file``: its files may read any
    variable.
    """
    if not isinstance(node, dict) or node.get("env_file") is not None:
        return None
    env = node.get("environment")
    bare: list[str] = []
    if isinstance(env, dict):
        bare = [str(k) for k, v in env.items() if v is None]
    elif isinstance(env, list):
        bare = [v for v in env if isinstance(v, str) and "=" not in v]
    return _fingerprint([[n, variables.get(n)] for n in sorted(bare)])


def _normalize_one(
    ctx: StackContext, name: str, node: Any, doc: Mapping[str, Any]
) -> ServiceResult:
    issues = Issues(ctx.compose_path)
    acc = MountAccumulator()
    used: dict[str, None] = {}
    spec = normalize_service(ctx, name, node, doc=doc, issues=issues, acc=acc, used_networks=used)
    return ServiceResult(
        spec,
        tuple(issues.findings),
        tuple(acc.config_files.items()),
        tuple(acc.data_dirs),
        tuple(acc.volumes),
        tuple(used),
    )


def _service(
    ctx: StackContext,
    name: str,
    node: Any,
    doc: Mapping[str, Any],
    *,
    memo: ServiceMemo | None,
    context: str | None,
) -> ServiceResult:
    """One service's result: from the memo, derived from its base, or normalized."""
    lookups = _lookups(node, ctx.variables) if memo is not None else None
    fingerprint = _fingerprint(node) if context is not None and lookups is not None else None
    if memo is None or context is None or lookups is None or fingerprint is None:
        return _normalize_one(ctx, name, node, doc)
    key = (name, fingerprint, context + lookups)
    result = memo.results.get(key)
    if result is None:
        base = memo.bases.get((name, context))
        result = _derived(ctx, name, node, lookups, base) or _normalize_one(ctx, name, node, doc)
        memo.results[key] = result
        if base is None and not result.findings:
            memo.bases[(name, context)] = (node, lookups, result)
    return result


def _derived(
    ctx: StackContext, name: str, node: Any, lookups: str, base: _Base | None
) -> ServiceResult | None:
    """The service derived from the memo's base for it (see ``respecify``), if it can be."""
    if base is None or base[2].spec is None:
        return None
    looked_up = ("environment",) if lookups != base[1] else ()  # bare names' values differ
    spec = respecify(ctx, name, node, base[0], base[2].spec, also=looked_up)
    if spec is None:
        return None
    old = base[2]
    return ServiceResult(spec, (), old.config_files, old.data_dirs, old.volumes, old.networks)


def _labels(spec: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(spec, dict):
        return ()
    value = spec.get("labels")
    if isinstance(value, dict):
        return tuple(sorted((str(k), scalar_text(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(sorted(tuple(str(v).partition("=")[::2]) for v in value))  # type: ignore[misc]
    return ()


def _options(spec: Any) -> tuple[tuple[str, str], ...]:
    opts = spec.get("driver_opts") if isinstance(spec, dict) else None
    if not isinstance(opts, dict):
        return ()
    return tuple(sorted((str(k), scalar_text(v)) for k, v in opts.items()))


def _network_spec(ctx: StackContext, key: str, declared: Mapping[str, Any]) -> NetworkSpec:
    spec = declared.get(key) or {}
    subnets: tuple[str, ...] = ()
    ipam = spec.get("ipam") if isinstance(spec, dict) else None
    if isinstance(ipam, dict) and isinstance(ipam.get("config"), list):
        subnets = tuple(
            scalar_text(c["subnet"])
            for c in ipam["config"]
            if isinstance(c, dict) and c.get("subnet")
        )
    return NetworkSpec(
        name=volume_name(key, declared, ctx.prefix),
        driver=scalar_text(spec.get("driver") or "bridge") if isinstance(spec, dict) else "bridge",
        internal=isinstance(spec, dict) and is_true(spec.get("internal")),
        labels=_labels(spec),
        external=is_external(spec),
        options=_options(spec),
        subnets=subnets,
    )


def _active(doc: Any, variables: Mapping[str, str]) -> Any:
    """``doc`` without the services whose ``profiles`` this device does not enable.

    As ``COMPOSE_PROFILES`` does: a service without profiles always runs, ``*`` enables
    every profile. The profiles come from device and group ``profiles:`` (targeting).
    """
    services = doc.get("services")
    if not isinstance(services, dict):
        return doc
    enabled = {p for p in variables.get("COMPOSE_PROFILES", "").split(",") if p}

    def active(node: Any) -> bool:
        wanted = node.get("profiles") if isinstance(node, dict) else None
        if not isinstance(wanted, list) or not wanted:
            return True
        return "*" in enabled or any(scalar_text(p) in enabled for p in wanted)

    if all(active(node) for node in services.values()):
        return doc
    kept = LineDict((k, v) for k, v in services.items() if active(v))
    kept.line = getattr(services, "line", 1)
    kept.key_lines = getattr(services, "key_lines", {})
    out = LineDict(doc)
    out.line = getattr(doc, "line", 1)
    out.key_lines = getattr(doc, "key_lines", {})
    out["services"] = kept
    return out


def _process_refs(
    spec: ServiceSpec, names: Mapping[str, str], services: Mapping[str, Any], issues: Issues
) -> ServiceSpec:
    """``pid: service:NAME`` resolved to ``container:<its container name>``."""
    if not spec.pid or not spec.pid.startswith("service:"):
        return spec
    other = spec.pid[len("service:") :]
    if other in names:
        return replace(spec, pid="container:" + names[other])
    issues.add(
        line_of(services.get(spec.service), "pid"),
        f"services.{spec.service}.pid",
        f"service {other!r} is not defined in this stack",
    )
    return replace(spec, pid=None)


def normalize_compose(
    doc: Any, ctx: StackContext, service_memo: ServiceMemo | None = None
) -> NormalizedStack:
    """Every service, network and volume of an interpolated Compose document, with findings."""
    issues = Issues(ctx.compose_path)
    if not isinstance(doc, dict):
        issues.add(None, "compose file", "must be a mapping with services")
        return NormalizedStack((), (), (), (), (), tuple(issues.findings))
    for key in doc:
        if key not in TOP_KEYS and not str(key).startswith("x-"):
            issues.add(line_of(doc, key), str(key), "is not supported by fleetgate; remove it")
    doc = _active(doc, ctx.variables)
    services = _mapping(doc, "services")
    acc = MountAccumulator()
    used_networks: dict[str, None] = {}
    specs: list[ServiceSpec] = []
    context = _fingerprint(
        (
            sorted(map(str, services)),
            [doc.get(k) for k in ("networks", "volumes", "configs", "secrets")],
        )
    )
    for name in services:
        result = _service(ctx, str(name), services[name], doc, memo=service_memo, context=context)
        issues.findings.extend(result.findings)
        acc.config_files.update(result.config_files)
        acc.data_dirs.update(dict.fromkeys(result.data_dirs))
        acc.volumes.update(dict.fromkeys(result.volumes))
        used_networks.update(dict.fromkeys(result.networks))
        if result.spec is not None:
            specs.append(result.spec)
    names = {s.service: s.container_name for s in specs}
    aliases = proc.link_aliases(services, issues)
    for i, spec in enumerate(specs):
        specs[i] = _process_refs(
            proc.with_aliases(spec, aliases.get(spec.service, {})), names, services, issues
        )
    for i, spec in enumerate(specs):
        mode = spec.network_mode or ""
        if mode.startswith("container:service:"):
            other = mode[len("container:service:") :]
            if other not in names:
                issues.add(
                    line_of(services.get(spec.service), "network_mode"),
                    f"services.{spec.service}.network_mode",
                    f"service {other!r} is not defined in this stack",
                )
                specs[i] = replace(spec, network_mode=None)
            else:
                specs[i] = replace(spec, network_mode="container:" + names[other])
    declared_networks = _mapping(doc, "networks")
    declared_volumes = _mapping(doc, "volumes")
    networks = tuple(
        sorted(
            (_network_spec(ctx, k, declared_networks) for k in used_networks), key=lambda n: n.name
        )
    )
    volumes = tuple(
        sorted(
            (
                VolumeSpec(
                    name=volume_name(k, declared_volumes, ctx.prefix),
                    driver=scalar_text((declared_volumes.get(k) or {}).get("driver") or "local"),
                    labels=_labels(declared_volumes.get(k)),
                    external=is_external(declared_volumes.get(k)),
                    options=_options(declared_volumes.get(k)),
                )
                for k in acc.volumes
            ),
            key=lambda v: v.name,
        )
    )
    # A repository file whose destination is in a data directory is a seed (stack.yaml
    # `seed:`): copied there only where absent. Configs live under {state}/configs.
    files = sorted(acc.config_files.values(), key=lambda c: c.host_path)
    data = posixpath.join(ctx.state_dir, "data") + "/"
    return NormalizedStack(
        services=tuple(specs),
        networks=networks,
        volumes=volumes,
        config_files=tuple(c for c in files if not c.host_path.startswith(data)),
        data_dirs=tuple(sorted(acc.data_dirs)),
        findings=tuple(issues.findings),
        seed_files=tuple(c for c in files if c.host_path.startswith(data)),
    )
