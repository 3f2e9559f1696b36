"""Render one stack for one device, memoized across the devices of a fleet.

``validate`` renders every device (10,000 devices x ~3 stacks within seconds), so the
expensive part — interpolation, Compose normalization, service ordering and the JSON of
every hashed field — is done once per *key* and only the device's names are filled in.

The memo is the caller's :class:`~reconciler.render.cache.RenderCache`. The key is the
stack manifest and the repository tree (the objects themselves, compared by identity: a
tree is one revision's snapshot and a reload makes new manifests, so a new revision
never hits an old entry), the state dir and the values of exactly the variables the
stack can observe (``referenced_variables``, bare ``environment`` names, env-file lookups). The
device id is *not* in the key unless the stack references ``FLEETGATE_DEVICE`` (whose
value may feed a path lookup or a number). Otherwise the stack is normalized for a
placeholder device whose id contains NUL bytes (so it cannot occur in any manifest
value), with ``FLEETGATE_LOCK_DIR`` at the placeholder's lock dir (an absolute path that
is only ever compared by prefix), and the placeholder is replaced by the real id
afterwards: in spec values, and in the cached canonical JSON (where it appears as
``\\u0000device\\u0000``; device ids need no escaping). Both replacements are exact.

On a miss (say a per-device ``PLC_ADDRESS``), the work is still shared below the stack:
the compose document is compiled once so interpolation copies only subtrees holding a
``$``; services whose interpolated mapping is unchanged come from a per-service memo
(see ``normalize_compose``) or are re-derived from an earlier device's normalization in
the few keys that differ (``respecify``), and a field value shared with the service's
previous spec reuses its JSON and short hash (only changed fields are serialized).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from operator import attrgetter
from typing import Any

from reconciler.errors import Finding
from reconciler.manifests.tree import RepoTree, TreeEscape
from reconciler.manifests.yamlio import line_at
from reconciler.model import (
    ConfigFile,
    Mount,
    NetworkAttachment,
    NetworkSpec,
    ServiceSpec,
    StackManifest,
    StackSpec,
    VolumeSpec,
)
from reconciler.render.cache import MEMO_SIZE, Ref, RenderCache, remember
from reconciler.render.compose.context import StackContext
from reconciler.render.compose.document import NormalizedStack, ServiceMemo, normalize_compose
from reconciler.render.compose.env import EnvFileError, env_file_names, parse_env_file
from reconciler.render.hashing import HASHED_FIELDS, HashMemo, whole_json
from reconciler.render.interpolation import CompiledDocument, InterpolationProblem
from reconciler.render.interpolation import referenced_variables as template_variables
from reconciler.render.targeting import Target, lock_dir, stack_variables

PLACEHOLDER = "\x00device\x00"
_PLACEHOLDER_JSON = "\\u0000device\\u0000"
_INDEX = {f.name: i for i, f in enumerate(fields(ServiceSpec))}
_HASHED_INDEX = tuple(_INDEX[name] for name in HASHED_FIELDS)
_CONFIG_HASH, _FIELD_HASHES = _INDEX["config_hash"], _INDEX["field_hashes"]
_all = attrgetter(*_INDEX)
_hashed = attrgetter(*HASHED_FIELDS)
_REST = {  # every field after `name` (the first), for a positional copy
    kind: attrgetter(*(f.name for f in fields(kind)[1:])) for kind in (NetworkSpec, VolumeSpec)
}


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A normalized service for the key's device, with its field JSON precomputed."""

    spec: ServiceSpec
    dirty: tuple[int, ...]  # ServiceSpec field indexes that contain the placeholder
    args: tuple[Any, ...]  # the spec's field values in declaration order (fast rebuild)
    texts: tuple[str, ...]  # canonical JSON per hashed field (placeholder inside if dirty)
    shorts: tuple[str, ...]  # short hash per hashed field (stale where dirty)
    whole: str  # canonical JSON of the hashed fields (placeholder inside when dirty)
    dirty_texts: tuple[int, ...]  # indexes into texts that contain the placeholder


@dataclass(frozen=True, slots=True)
class StackOutcome:
    """A stack rendered for one device, or why it could not be."""

    spec: StackSpec | None
    findings: tuple[Finding, ...]  # compose findings (no device name in them), warnings too
    problems: tuple[InterpolationProblem, ...]  # formatted per device by render (with a
    # spec: warnings only)


@dataclass(frozen=True, slots=True)
class StackResult:
    normalized: NormalizedStack | None
    services: tuple[_Prepared, ...]
    findings: tuple[Finding, ...]
    problems: tuple[InterpolationProblem, ...]


@dataclass(frozen=True, slots=True)
class StackMemo:
    stack: StackManifest
    tree: RepoTree
    names: frozenset[str] | None  # None: unknowable (interpolated env_file path)
    services: dict[tuple[str, str], ServiceMemo]  # (device-as, state dir) -> service memo
    prepared: dict[Ref[ServiceSpec], _Prepared]  # by spec identity
    last: dict[str, tuple[ServiceSpec, _Prepared]]  # per service: the latest prepared
    compiled: CompiledDocument
    keyed: tuple[str, ...]  # the sorted names but FLEETGATE_LOCK_DIR (None: all of them)


def _stack_memo(stack: StackManifest, tree: RepoTree, cache: RenderCache) -> StackMemo:
    key = (Ref(stack), Ref(tree))
    hit = cache.stacks.get(key)
    if hit is not None:
        return hit
    names = observed_variables(stack, tree)
    keyed = tuple(sorted((names or frozenset()) - {"FLEETGATE_LOCK_DIR"}))
    info = StackMemo(stack, tree, names, {}, {}, {}, CompiledDocument(stack.compose), keyed)
    remember(cache.stacks, key, info)
    return info


def observed_variables(stack: StackManifest, tree: RepoTree) -> frozenset[str] | None:
    """Variables a stack's render can depend on; ``None`` when not knowable statically."""
    names: set[str] = set(template_variables(stack.compose))
    services = stack.compose.get("services") if isinstance(stack.compose, dict) else None
    stack_dir = stack.compose_path.rpartition("/")[0]
    for svc in services.values() if isinstance(services, dict) else ():
        if not isinstance(svc, dict):
            continue
        if svc.get("profiles"):
            names.add("COMPOSE_PROFILES")
        env = svc.get("environment")
        if isinstance(env, dict):
            names.update(str(k) for k, v in env.items() if v is None)
        elif isinstance(env, list):
            names.update(str(v) for v in env if isinstance(v, str) and "=" not in v)
        files = svc.get("env_file")
        for entry in [files] if isinstance(files, str | dict) else (files or []):
            path = entry.get("path") if isinstance(entry, dict) else entry
            if not isinstance(path, str) or "$" in path:
                return None
            rel = tree.normalize(path, stack_dir)
            try:
                if rel is not None and tree.kind(rel) == "file":
                    names.update(env_file_names(parse_env_file(tree.read_bytes(rel).decode())))
            except (OSError, UnicodeDecodeError, TreeEscape, EnvFileError):
                pass  # normalization reports the file
    return frozenset(names)


def ordered(
    services: tuple[ServiceSpec, ...], stack: StackManifest
) -> tuple[tuple[ServiceSpec, ...], list[Finding]]:
    """Dependencies first, then by name (Kahn's algorithm with a name-ordered heap)."""
    by_name = {s.service: s for s in services}
    waiting = {
        s.service: {d.service for d in s.depends_on if d.service in by_name} for s in services
    }
    ready = [name for name, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    out: list[ServiceSpec] = []
    while ready:
        name = heapq.heappop(ready)
        out.append(by_name[name])
        for other, deps in waiting.items():
            if name in deps:
                deps.discard(name)
                if not deps:
                    heapq.heappush(ready, other)
    stuck = sorted(n for n, deps in waiting.items() if deps)
    findings = [
        Finding(
            stack.compose_path,
            line_at(stack.compose, ["services", name, "depends_on"]),
            f"services.{name}.depends_on: dependency cycle among {', '.join(stuck)}; break it",
        )
        for name in stuck
    ]
    return tuple(out), findings


def rebind(value: Any, real: str) -> Any:
    """Replace the placeholder device id by ``real`` everywhere in a spec value.

    Parts without the placeholder are returned as the same objects (cheap to compare).
    """
    kind = type(value)
    if kind is str:
        return value.replace(PLACEHOLDER, real) if PLACEHOLDER in value else value
    if kind is tuple:
        for i, item in enumerate(value):
            new = rebind(item, real)
            if new is not item:
                return (*value[:i], new, *(rebind(v, real) for v in value[i + 1 :]))
        return value
    if kind is Mount:
        if PLACEHOLDER not in value.source:
            return value
        return Mount(
            value.kind, value.source.replace(PLACEHOLDER, real), value.target, value.read_only
        )
    if kind is NetworkAttachment:
        if PLACEHOLDER not in value.network:
            return value
        name = value.network.replace(PLACEHOLDER, real)
        return NetworkAttachment(name, value.aliases, value.ipv4_address)
    if kind is ConfigFile:
        if PLACEHOLDER not in value.host_path:
            return value
        return ConfigFile(
            value.repo_path, value.host_path.replace(PLACEHOLDER, real), value.digest, value.mode
        )
    if kind is NetworkSpec or kind is VolumeSpec:
        if PLACEHOLDER not in value.name:
            return value
        return kind(value.name.replace(PLACEHOLDER, real), *_REST[kind](value))
    if is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in fields(value):
            old = getattr(value, f.name)
            new = rebind(old, real)
            if new is not old:
                changes[f.name] = new
        return replace(value, **changes) if changes else value
    return value


def _compute(
    stack: StackManifest,
    info: StackMemo,
    device: str,
    state_dir: str,
    variables: Mapping[str, str],
    *,
    hashes: HashMemo,
) -> StackResult:
    doc, problems = info.compiled.interpolate(variables)
    if any(p.severity == "error" for p in problems):
        return StackResult(None, (), (), problems)
    ctx = StackContext(
        tree=info.tree,
        device=device,
        stack=stack.name,
        compose_path=stack.compose_path,
        state_dir=state_dir,
        lock_dir=lock_dir(state_dir, device, stack.name),
        variables=variables,
        seed=stack.seed,
    )
    memo = None
    if device == PLACEHOLDER:  # a per-device memo would never be hit again
        memo = info.services.setdefault((device, state_dir), ServiceMemo())
        if len(memo.results) > MEMO_SIZE:
            memo.results.clear()
    norm = normalize_compose(doc, ctx, memo)
    services, cycle = ordered(norm.services, stack)
    prepared = []
    for svc in services:
        # The service memo hands back the same spec object for an unchanged service.
        key = Ref(svc)
        hit = info.prepared.get(key)
        if hit is None:
            hit = _prepare(svc, device == PLACEHOLDER, info.last.get(svc.service), hashes)
            info.prepared[key] = hit
            info.last[svc.service] = (svc, hit)
            if len(info.prepared) > MEMO_SIZE:
                info.prepared.clear()
        prepared.append(hit)
    return StackResult(norm, tuple(prepared), (*norm.findings, *cycle), problems)


def _prepare(
    svc: ServiceSpec,
    placeholder: bool,
    last: tuple[ServiceSpec, _Prepared] | None,
    hashes: HashMemo,
) -> _Prepared:
    """Field JSON, hashes and placeholder positions of a normalized service.

    A field value that *is* (by identity) the one of ``last``, the service's previous
    spec (``respecify`` shares every unchanged value), reuses its JSON and hash.
    """
    values = _hashed(svc)
    texts: list[str] = []
    shorts: list[str] = []
    old_values = _hashed(last[0]) if last is not None else ()
    for i, value in enumerate(values):
        if last is not None and value is old_values[i]:
            texts.append(last[1].texts[i])
            shorts.append(last[1].shorts[i])
        else:
            text = hashes.field_json(HASHED_FIELDS[i], value)
            texts.append(text)
            shorts.append(hashes.short_hash(text))
    whole = whole_json(texts)
    args = _all(svc)
    # Only the identity field `device` and hashed fields can hold the placeholder.
    dirty_texts = tuple(i for i, t in enumerate(texts) if _PLACEHOLDER_JSON in t)
    if not placeholder:
        dirty_texts = ()
    if placeholder:
        dirty = (_INDEX["device"], *(_HASHED_INDEX[i] for i in dirty_texts))
        done = svc
    else:
        dirty = ()
        final = list(args)
        final[_CONFIG_HASH] = hashlib.sha256(whole.encode()).hexdigest()
        final[_FIELD_HASHES] = tuple(zip(HASHED_FIELDS, shorts, strict=True))
        done = ServiceSpec(*final)
    return _Prepared(done, dirty, args, tuple(texts), tuple(shorts), whole, dirty_texts)


def _finish(prep: _Prepared, device: str, hashes: HashMemo) -> ServiceSpec:
    """The prepared service for ``device``: placeholder replaced, hashes computed."""
    if not prep.dirty:
        return prep.spec
    args = list(prep.args)
    for index in prep.dirty:
        args[index] = rebind(args[index], device)
    whole = prep.whole.replace(_PLACEHOLDER_JSON, device)
    args[_CONFIG_HASH] = hashlib.sha256(whole.encode()).hexdigest()
    shorts = list(prep.shorts)
    for index in prep.dirty_texts:
        shorts[index] = hashes.short_hash(prep.texts[index].replace(_PLACEHOLDER_JSON, device))
    args[_FIELD_HASHES] = tuple(zip(HASHED_FIELDS, shorts, strict=True))
    return ServiceSpec(*args)


def render_stack(
    stack: StackManifest, tree: RepoTree, target: Target, state_dir: str, cache: RenderCache
) -> StackOutcome:
    """The stack's spec on ``target``'s device (hashes included), memoized in ``cache``."""
    device = target.device.id
    info = _stack_memo(stack, tree, cache)
    real_vars = stack_variables(target, stack.variables, state_dir, stack.name)
    per_device = info.names is None or "FLEETGATE_DEVICE" in info.names
    as_device = device if per_device else PLACEHOLDER
    if info.names is None:
        values: tuple[Any, ...] = tuple(sorted(real_vars.items()))
    else:
        values = tuple([real_vars.get(n) for n in info.keyed])
    key = (Ref(info), state_dir, as_device if per_device else None, values)
    hit = cache.results.get(key)
    if hit is not None:
        cache.results.move_to_end(key)
        cached = hit
    else:
        variables = dict(real_vars)
        variables["FLEETGATE_DEVICE"] = as_device
        variables["FLEETGATE_LOCK_DIR"] = lock_dir(state_dir, as_device, stack.name)
        cached = _compute(stack, info, as_device, state_dir, variables, hashes=cache.hashes)
        remember(cache.results, key, cached)
    norm = cached.normalized
    if norm is None:
        return StackOutcome(None, (), cached.problems)
    services = tuple(_finish(prep, device, cache.hashes) for prep in cached.services)
    findings = cached.findings
    networks, volumes = norm.networks, norm.volumes
    config_files, data_dirs, seeds = norm.config_files, norm.data_dirs, norm.seed_files
    if not per_device:
        networks, volumes = rebind(networks, device), rebind(volumes, device)
        config_files, data_dirs = rebind(config_files, device), rebind(data_dirs, device)
        seeds = rebind(seeds, device)
        findings = rebind(findings, device)
    stack_spec = StackSpec(
        name=stack.name,
        services=services,
        networks=networks,
        volumes=volumes,
        config_files=config_files,
        data_dirs=data_dirs,
        lock_dir=real_vars["FLEETGATE_LOCK_DIR"],
        health_timeout=stack.health_timeout,
        update_strategy=stack.update_strategy,
        seed_files=seeds,
    )
    return StackOutcome(stack_spec, findings, cached.problems)  # problems: warnings only
