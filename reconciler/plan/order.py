"""The order services start in, and when a dependency already counts as ready (pure).

Compose's ``depends_on`` decides the order within a stack; a dependency that this plan
does not start and that already meets its condition needs no ``wait-healthy``.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.model import ObservedContainer, ServiceSpec
from reconciler.plan.steps import WaitCondition


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
