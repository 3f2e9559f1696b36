"""Which groups, stacks, variables and update windows apply to one device.

Rules (DESIGN §1), with the choices the contract left open:

- A group applies when every ``selector`` key equals the device's label. An *empty*
  selector matches every device (the vacuous "all keys equal", as an empty Kubernetes
  label selector does): it is how a fleet says "these stacks everywhere".
- Stacks are the device's own list in its order, then each matching group's stacks in
  group file-name order; a stack named twice runs once (first place wins).
- Variables, lowest precedence first: stack defaults, fleet, groups in file-name order,
  device. The builtins ``FLEETGATE_DEVICE``, ``FLEETGATE_ARCH`` and ``FLEETGATE_LOCK_DIR``
  *always win*: a manifest cannot point one device's lock dir at another's or lie
  about the device name. ``FLEETGATE_ARCH`` is ``""`` when the device declares no arch.
- Update windows: the device's own list when declared (even an empty list, which means
  any time); else the union of its groups' windows (duplicates once); else the fleet's.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.model import DeviceManifest, FleetRepository, GroupManifest, UpdateWindow
from reconciler.render.cache import Ref, RenderCache

BUILTIN_VARIABLES = ("FLEETGATE_DEVICE", "FLEETGATE_ARCH", "FLEETGATE_LOCK_DIR")


@dataclass(frozen=True, slots=True)
class Target:
    """What the repository asks of one device, before any stack is rendered."""

    device: DeviceManifest
    groups: tuple[GroupManifest, ...]  # matching groups, file-name order
    stacks: tuple[str, ...]
    variables: Mapping[str, str]  # fleet < groups < device (no stack defaults, no builtins)
    update_windows: tuple[UpdateWindow, ...]  # empty: any time


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """True when every selector key is a label of the device with an equal value."""
    return all(labels.get(key) == value for key, value in selector.items())


def matching_groups(
    repo: FleetRepository, device: DeviceManifest, cache: RenderCache | None = None
) -> tuple[GroupManifest, ...]:
    """The groups that apply to ``device``, in file-name (sorted name) order.

    A fleet of 10,000 devices has a few hundred distinct label sets; ``cache`` keeps
    the answer per label set for this repository's groups.
    """
    key = tuple(sorted(device.labels.items()))
    by_labels = None if cache is None else cache.groups.setdefault(Ref(repo.groups), {})
    found = None if by_labels is None else by_labels.get(key)
    if found is None:
        found = tuple(
            repo.groups[name]
            for name in sorted(repo.groups)
            if selector_matches(repo.groups[name].selector, device.labels)
        )
        if by_labels is not None:
            by_labels[key] = found
    return found


def target_device(
    repo: FleetRepository, device: DeviceManifest, cache: RenderCache | None = None
) -> Target:
    """Resolve groups, stacks, variables and windows for one device (pure)."""
    groups = matching_groups(repo, device, cache)
    stacks: dict[str, None] = dict.fromkeys(device.stacks)
    for group in groups:
        for stack in group.stacks:
            stacks.setdefault(stack, None)
    variables: dict[str, str] = dict(repo.fleet.variables)
    for group in groups:
        variables.update(group.variables)
    variables.update(device.variables)
    return Target(
        device=device,
        groups=groups,
        stacks=tuple(stacks),
        variables=variables,
        update_windows=effective_windows(repo, device, groups),
    )


def effective_windows(
    repo: FleetRepository, device: DeviceManifest, groups: tuple[GroupManifest, ...]
) -> tuple[UpdateWindow, ...]:
    """Device's own windows if declared; else the union of its groups'; else the fleet's."""
    if device.update_windows is not None:
        return device.update_windows
    union: dict[UpdateWindow, None] = {}
    for group in groups:
        union.update(dict.fromkeys(group.update_windows))
    if union:
        return tuple(union)
    return repo.fleet.update_windows


def lock_dir(state_dir: str, device: str, stack: str) -> str:
    """The stack's ``FLEETGATE_LOCK_DIR`` on the device."""
    return posixpath.join(state_dir, "locks", device, stack)


def stack_variables(
    target: Target,
    stack_defaults: Mapping[str, str],
    state_dir: str,
    stack: str,
) -> dict[str, str]:
    """The interpolation variables of one stack on one device, builtins winning."""
    # ${PWD} is the stack directory, as `docker compose` run in its folder sees it:
    # `$PWD/data` is `./data`, a path of the stack (lowest precedence, like the shell's).
    variables = {"PWD": ".", **stack_defaults}
    variables.update(target.variables)
    profiles = [*target.device.profiles, *(p for g in target.groups for p in g.profiles)]
    if profiles:  # like COMPOSE_PROFILES; a COMPOSE_PROFILES variable adds to them
        given = [p for p in variables.get("COMPOSE_PROFILES", "").split(",") if p]
        variables["COMPOSE_PROFILES"] = ",".join(sorted({*given, *profiles}))
    variables["FLEETGATE_DEVICE"] = target.device.id
    variables["FLEETGATE_ARCH"] = target.device.arch or ""
    variables["FLEETGATE_LOCK_DIR"] = lock_dir(state_dir, target.device.id, stack)
    return variables
