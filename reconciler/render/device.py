"""Render one device's desired state from the fleet repository (pure: no Docker, no Git).

``render_device`` = targeting (groups, stacks, variables, windows) -> per stack:
interpolation -> Compose normalization -> service order and config hashes. It raises
:class:`ManifestError` carrying *every* finding of the device, or returns a
:class:`Rendered` whose ``where`` maps a service key back to its compose file line.

Performance: each stack is rendered through :mod:`reconciler.render.stack`, which
memoizes the device-independent work across the devices of a fleet in the caller's
:class:`~reconciler.render.cache.RenderCache`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import Finding, ManifestError
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.yamlio import line_at
from reconciler.model import (
    DesiredState,
    DeviceManifest,
    FleetRepository,
    Location,
    StackManifest,
    StackSpec,
)
from reconciler.render.cache import RenderCache
from reconciler.render.hashing import spec_hashes
from reconciler.render.interpolation import InterpolationProblem
from reconciler.render.stack import render_stack
from reconciler.render.targeting import target_device

__all__ = ["DEFAULT_STATE_DIR", "RenderCache", "Rendered", "render_device", "spec_hashes"]

DEFAULT_STATE_DIR = "/var/lib/fleetgate"


@dataclass(frozen=True, slots=True)
class Rendered:
    """A device's desired state plus the way back to the lines it came from."""

    state: DesiredState
    warnings: tuple[Finding, ...] = ()  # never block: validate prints them
    compose: Mapping[str, tuple[str, Any]] = field(default_factory=dict, compare=False)
    # stack name -> (compose path, parsed compose document before interpolation)

    def where(self, stack: str, service: str | None = None, key: str | None = None) -> Location:
        """The compose file and line of ``services.<service>.<key>`` (nearest existing node)."""
        path, doc = self.compose.get(stack, (f"stacks/{stack}/compose.yaml", None))
        parts: list[str] = []
        if service is not None:
            parts += ["services", service]
            if key is not None:
                parts.append(key)
        return Location(path, line_at(doc, parts) if doc is not None else None)


# ------------------------------------------------------------------ device


def _requirement_findings(device: DeviceManifest, stack: StackManifest) -> list[Finding]:
    where = device.location
    out = []
    missing = [c for c in stack.requires_capabilities if c not in device.capabilities]
    if missing:
        out.append(
            Finding(
                where.path,
                where.line,
                f"stack {stack.name} requires capabilities {', '.join(missing)} that device "
                f"{device.id} lacks; add them to capabilities or remove the stack",
            )
        )
    if stack.requires_arch and device.arch not in stack.requires_arch:
        have = device.arch or "no arch"
        out.append(
            Finding(
                where.path,
                where.line,
                f"stack {stack.name} runs on {', '.join(stack.requires_arch)} but device "
                f"{device.id} declares {have}; set arch or remove the stack",
            )
        )
    return out


def _problem_findings(
    stack: StackManifest, device: DeviceManifest, problems: tuple[InterpolationProblem, ...]
) -> list[Finding]:
    out = []
    for problem in problems:
        line, key_path = problem.line, problem.key_path
        variable, detail = problem.variable, problem.detail
        where = device.location.path or f"devices/{device.id}.yaml"
        if problem.severity == "warning":
            message = (
                f"device {device.id}: variable {variable} is not set, so {key_path} gets an "
                f"empty string there (as in Compose); set it in {where}, a group or "
                f"fleet.yaml, or write ${{{variable}-}} where empty is meant"
            )
            out.append(Finding(stack.compose_path, line, message, "warning"))
            continue
        if variable is not None:
            why = f" ({detail})" if detail else f" ({key_path} cannot be left without it)"
            message = (
                f"device {device.id}: variable {variable} is required{why}; set it in "
                f"{where}, a group or fleet.yaml"
            )
        else:
            message = (
                f"{key_path}: invalid interpolation format in {detail!r}; use $$ for a literal $"
            )
        out.append(Finding(stack.compose_path, line, message))
    return out


def render_device(
    repo: FleetRepository,
    tree: RepoTree,
    device_id: str,
    state_dir: str = DEFAULT_STATE_DIR,
    cache: RenderCache | None = None,
    *,
    partial: list[Finding] | None = None,
) -> Rendered:
    """The desired state of one device; raise :class:`ManifestError` with all its findings.

    Pass one ``cache`` to every device of the same repository snapshot (validate,
    impact) to share the work across them; without one the call computes afresh.
    With ``partial`` (validate only), findings are appended there instead and the
    stacks that rendered cleanly are returned, so later layers (policy) still run.
    Warnings never raise: they are in ``Rendered.warnings`` (and in ``partial``).
    """
    cache = RenderCache() if cache is None else cache
    device = repo.devices.get(device_id)
    if device is None:
        raise ManifestError(
            [
                Finding(
                    f"devices/{device_id}.yaml",
                    None,
                    f"unknown device {device_id!r}; add this file",
                )
            ]
        )
    target = target_device(repo, device, cache)
    findings: list[Finding] = []
    specs: list[StackSpec] = []
    docs: dict[str, tuple[str, Any]] = {}
    for name in sorted(target.stacks):
        stack = repo.stacks.get(name)
        if stack is None:
            findings.append(
                Finding(
                    device.location.path,
                    device.location.line,
                    f"stack {name!r} is not in the repository (or is invalid); fix stacks/{name}",
                )
            )
            continue
        docs[name] = (stack.compose_path, stack.compose)
        findings += _requirement_findings(device, stack)
        outcome = render_stack(stack, tree, target, state_dir, cache)
        findings += _problem_findings(stack, device, outcome.problems)
        findings += outcome.findings
        if outcome.spec is not None:
            specs.append(outcome.spec)
    errors = [f for f in findings if f.is_error]
    if errors and partial is None:
        raise ManifestError(sorted(set(errors)))
    if partial is not None:
        partial.extend(sorted(set(findings)))
    warnings = tuple(sorted({f for f in findings if not f.is_error}))
    state = DesiredState(
        device=device.id,
        revision=repo.revision,
        arch=device.arch,
        stacks=tuple(specs),
        update_windows=target.update_windows,
    )
    return Rendered(state, warnings, docs)
