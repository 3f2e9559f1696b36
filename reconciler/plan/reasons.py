"""Why the planner emits a step or leaves a container alone (pure; one line each).

Every step carries a reason a person can read in ``fleetgate plan`` and in the logs
("config-hash changed: environment"); every no-op explains itself in the plan's notes.
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.model import ObservedContainer, ServiceSpec


def changed_fields(old: Iterable[tuple[str, str]], new: Iterable[tuple[str, str]]) -> list[str]:
    """Names of the fields whose short hashes differ (or exist on one side only), sorted."""
    a, b = dict(old), dict(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def prune_reason(c: ObservedContainer, stacks: set[str]) -> str:
    return "stack removed" if c.stack not in stacks else "service removed from stack"


def create_reason(primary: ObservedContainer | None, spec: ServiceSpec) -> str:
    if primary is None:
        return "container missing"
    if primary.config_hash != spec.config_hash:
        fields = changed_fields(primary.field_hashes, spec.field_hashes)
        return "config-hash changed" + (f": {', '.join(fields)}" if fields else "")
    if primary.name != spec.container_name:
        return f"container name changed from {primary.name}"
    return "container dead"


def start_reason(c: ObservedContainer, spec: ServiceSpec) -> str | None:
    """Why a matching container must be started, or ``None`` when it should be left as is.

    An exited container that completed (code 0) and whose restart policy would not
    restart it (``no``, ``on-failure``) is a finished one-shot job: left alone.
    """
    if c.state == "created":
        return "container created but not started"
    if c.state == "exited":
        completed = c.exit_code == 0 and (
            spec.restart == "no" or spec.restart.startswith("on-failure")
        )
        return None if completed else f"container exited (code {c.exit_code})"
    return None


def idle_note(c: ObservedContainer) -> str:
    match c.state:
        case "exited":
            return "completed (exit code 0)"
        case "restarting":
            return f"up to date, restarting ({c.restart_count} restarts)"
        case "paused":
            return "up to date, paused"
        case _:
            return "up to date"
