"""Render a fleet at two revisions and compare, rendering only devices a change can reach.

Rendering all 10,000 devices of a large fleet twice takes minutes; a review wants the
answer in seconds. :func:`devices_in_scope` therefore compares the *inputs* of render
first and returns the devices whose inputs differ; every other device renders to the
same desired state at both revisions, because render is a pure function of exactly
these inputs (proved against full rendering in ``tests/test_impact_scope.py``):

- ``fleet.yaml`` (variables, windows, policy): when it differs, every device;
- the device's own manifest (added, removed or any value changed);
- every group that matches the device at either revision and differs (a changed
  selector reaches the devices it matched before *and* after);
- every stack the device runs at either revision whose folder content
  (``stacks/<name>/**``, symlinks followed) or parsed manifest differs;
- files outside those areas (a README, ``images/``, ``shared/``): only a stack whose
  Compose file or variables contain ``..`` can reach them, so when anything at all
  changed, devices running such a stack are rendered too; when any variable value of
  the fleet contains ``..``, every stack is treated as reaching out.

Reading goes through :class:`RepoTree` only (like render); there is no clock or Git here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.errors import Finding, ManifestError
from reconciler.manifests import policy as policy_mod
from reconciler.manifests.repository import load_repository
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.validate import cross_stack_findings
from reconciler.model import DesiredState, FleetRepository
from reconciler.render.cache import RenderCache
from reconciler.render.device import DEFAULT_STATE_DIR, render_device
from reconciler.render.targeting import matching_groups, selector_matches
from reconciler.review.impact import DeviceImpact, compare_device

_AREAS = frozenset({"fleet.yaml", "devices", "groups", "stacks", ".git"})


@dataclass(frozen=True, slots=True)
class Side:
    """One revision of the fleet: its files, parsed manifests and load findings."""

    tree: RepoTree
    repo: FleetRepository
    findings: tuple[Finding, ...]


@dataclass(frozen=True, slots=True)
class Assessment:
    """The devices a change touches (sorted by id) or, for an invalid HEAD, its findings."""

    devices: tuple[DeviceImpact, ...]
    findings: tuple[Finding, ...]  # HEAD's: load findings + findings of the devices rendered
    rendered: int  # devices rendered (at either revision)
    total: int  # devices at either revision


def read_side(tree: RepoTree, revision: str | None) -> Side:
    repo, findings = load_repository(tree, revision)
    return Side(tree, repo, findings)


# ------------------------------------------------------------------ fingerprints


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _reaching_stacks(side: Side) -> set[str]:
    """Stacks that may read files outside their own folder (``..`` in a path or variable)."""
    repo = side.repo
    values: list[str] = list(repo.fleet.variables.values())
    for group in repo.groups.values():
        values += group.variables.values()
    for device in repo.devices.values():
        values += device.variables.values()
    if any(".." in v for v in values):
        return set(repo.stacks)
    return {
        name
        for name, stack in repo.stacks.items()
        if any(".." in s for s in _strings(stack.compose))
        or any(".." in v for v in stack.variables.values())
    }


def _stack_prints(side: Side) -> dict[str, tuple[object, str]]:
    """Stack folder -> (parsed manifest or ``None``, content digest of the folder)."""
    tree = side.tree
    out: dict[str, tuple[object, str]] = {}
    for name in tree.list_dir("stacks"):
        path = f"stacks/{name}"
        kind = tree.kind(path)
        if kind == "outside":
            out[name] = (None, "outside")
        elif kind == "dir":
            out[name] = (side.repo.stacks.get(name), tree.digest(path))
    return out


def _other_files(tree: RepoTree) -> dict[str, str]:
    """Digests of every file outside ``fleet.yaml``, manifests and stack folders."""
    out: dict[str, str] = {}
    for name in tree.list_dir(""):
        if name not in _AREAS:
            for path in tree.files_under(name) if tree.kind(name) == "dir" else [name]:
                out[path] = tree.digest(path) if tree.kind(path) == "file" else tree.kind(path)
    for folder in ("devices", "groups", "stacks"):
        for name in tree.list_dir(folder):
            path = f"{folder}/{name}"
            kind = tree.kind(path)
            is_manifest = folder != "stacks" and name.rsplit(".", 1)[-1] in ("yaml", "yml")
            if kind == "file" and not is_manifest:
                out[path] = tree.digest(path)
            elif kind == "dir" and folder != "stacks":
                out.update((p, tree.digest(p)) for p in tree.files_under(path))
    return out


def devices_in_scope(base: Side, head: Side) -> frozenset[str] | None:
    """The devices whose render inputs differ between the sides; ``None``: all of them."""
    old, new = base.repo, head.repo
    if old.fleet != new.fleet or tuple(base.findings) != tuple(head.findings):
        # Fleet-wide settings, or a file that failed to load on one side (its manifest is
        # missing from the value, so comparing values would miss it): render everything.
        return None
    changed_devices = {
        d
        for d in old.devices.keys() | new.devices.keys()
        if old.devices.get(d) != new.devices.get(d)
    }
    changed_groups = {
        g for g in old.groups.keys() | new.groups.keys() if old.groups.get(g) != new.groups.get(g)
    }
    old_prints, new_prints = _stack_prints(base), _stack_prints(head)
    changed_stacks = {
        s for s in old_prints.keys() | new_prints.keys() if old_prints.get(s) != new_prints.get(s)
    }
    others_changed = _other_files(base.tree) != _other_files(head.tree)
    if changed_devices or changed_groups or changed_stacks or others_changed:
        changed_stacks |= _reaching_stacks(base) | _reaching_stacks(head)
    scope = set(changed_devices)
    for repo in (old, new):
        groups = [repo.groups[g] for g in changed_groups if g in repo.groups]
        using = [g for g in repo.groups.values() if changed_stacks.intersection(g.stacks)]
        for device_id, device in repo.devices.items():
            if device_id in scope:
                continue
            if changed_stacks.intersection(device.stacks) or any(
                selector_matches(g.selector, device.labels) for g in (*groups, *using)
            ):
                scope.add(device_id)
    return frozenset(scope)


# ------------------------------------------------------------------ rendering


def render_in(
    side: Side, device_id: str, state_dir: str, cache: RenderCache
) -> tuple[DesiredState | None, list[Finding]]:
    """One device's desired state at ``side`` (``None`` where it is absent or invalid)
    and HEAD-worthy findings: render, cross-stack and policy."""
    if device_id not in side.repo.devices:
        return None, []
    try:
        rendered = render_device(side.repo, side.tree, device_id, state_dir, cache)
    except ManifestError as e:
        return None, list(e.findings)
    extra = cross_stack_findings(rendered) + policy_mod.check(rendered, side.repo.fleet.policy)
    return rendered.state, extra


def assess(
    base: Side,
    head: Side,
    now: datetime,
    state_dir: str = DEFAULT_STATE_DIR,
    selective: bool = True,
) -> Assessment:
    """Every device whose desired state differs between ``base`` and ``head``.

    With ``selective`` (the default) only the devices :func:`devices_in_scope` names
    are rendered; ``selective=False`` renders every device (the reference behaviour).
    When HEAD has findings (load findings, or render / cross-stack / policy findings of
    a rendered device) they are returned and ``devices`` is empty.
    """
    every = base.repo.devices.keys() | head.repo.devices.keys()
    scope = devices_in_scope(base, head) if selective else None
    wanted = sorted(every if scope is None else scope)
    findings: set[Finding] = set(head.findings)
    impacts: list[DeviceImpact] = []
    base_cache, head_cache = RenderCache(), RenderCache()  # one per repository snapshot
    for device_id in wanted:
        before, _ = render_in(base, device_id, state_dir, base_cache)
        after, problems = render_in(head, device_id, state_dir, head_cache)
        findings.update(problems)
        if findings:
            continue
        impact = compare_device(before, after, now, *placement((head, base), device_id))
        if impact is not None:
            impacts.append(impact)
    ordered = tuple(sorted(findings, key=lambda f: (f.path, f.line or 0, f.message)))
    return Assessment(
        devices=() if ordered else tuple(impacts),
        findings=ordered,
        rendered=len(wanted),
        total=len(every),
    )


def placement(sides: Iterable[Side], device_id: str) -> tuple[str | None, tuple[str, ...]]:
    """The device's ``site`` label and matching groups at the first side that has it."""
    for side in sides:
        device = side.repo.devices.get(device_id)
        if device is not None:
            groups = tuple(g.name for g in matching_groups(side.repo, device))
            return device.labels.get("site"), groups
    return None, ()


def changed_device_ids(impacts: Iterable[DeviceImpact]) -> tuple[str, ...]:
    return tuple(sorted(i.device for i in impacts))
