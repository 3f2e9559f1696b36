"""The order services start in, and when a dependency already counts as ready (pure).

Compose's ``depends_on`` decides the order within a stack; a dependency that this plan
does not start and that already meets its condition needs no ``wait-healthy``
(:func:`dependency_waits`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from reconciler.model import ObservedContainer, ServiceSpec, StackSpec
from reconciler.plan.steps import Step, WaitCondition, WaitHealthy


def dependency_order(services: Sequence[ServiceSpec]) -> list[ServiceSpec]:
    """Dependencies first, otherwise the given order (stable); cycles fall back to it."""
    by_name = {s.service: s for s in services}
    out: list[ServiceSpec] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(spec: ServiceSpec) -> None:
        if spec.service in done or spec.service in visiting:
            return
        visiting.add(spec.service)
        for dep in spec.depends_on:
            if dep.service in by_name:
                visit(by_name[dep.service])
        visiting.discard(spec.service)
        done.add(spec.service)
        out.append(spec)

    for spec in services:
        visit(spec)
    return out


def satisfied(c: ObservedContainer, condition: WaitCondition) -> bool:
    """Whether an untouched dependency already meets a ``depends_on`` condition."""
    if condition == "completed":
        return c.state == "exited" and c.exit_code == 0
    return c.state == "running" and c.health in (None, "healthy")


def dependency_waits(
    stack: StackSpec,
    spec: ServiceSpec,
    started: Collection[tuple[str, str]],
    kept: Mapping[tuple[str, str], ObservedContainer],
) -> list[Step]:
    """``wait-healthy`` for each condition-bearing dependency not already satisfied.

    ``started``: the (stack, service) pairs this plan starts (always waited for);
    ``kept``: the containers it leaves as they are (waited for unless :func:`satisfied`).
    """
    names = {s.service: s.container_name for s in stack.services}
    out: list[Step] = []
    for dep in spec.depends_on:
        if dep.condition == "service_started" or dep.service not in names:
            continue
        dkey = (stack.name, dep.service)
        cond: WaitCondition = "healthy" if dep.condition == "service_healthy" else "completed"
        container = kept.get(dkey)
        if dkey not in started and container is not None and satisfied(container, cond):
            continue
        why = f"{stack.name}/{spec.service} depends on it ({dep.condition})"
        out.append(
            WaitHealthy(
                stack.name, dep.service, names[dep.service], stack.health_timeout, why, cond
            )
        )
    return out
