"""The health gate: after an update, every desired service must run and stay healthy.

Decisions and waiting are separate. :func:`assess` is pure: one observed snapshot
in, a verdict per service out. :func:`verify` polls the runtime (clock and sleep are
arguments) and asks :func:`assess` each time, until everything is healthy, something
failed, or the timeout passes.

A service is healthy when its one container runs the desired configuration, has not
restarted since the baseline taken right after apply, and reports ``healthy`` where
it has a healthcheck (the Compose file's or the image's). A container that exited,
is restarting, restarted or is ``unhealthy`` fails the gate at once ("fail fast"),
with a reason such as ``mqtt/broker: exited with code 1``. Services without a
healthcheck must stay up for a settle period (``settle``, capped by the timeout) so
a process that crashes a second after start is caught.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from reconciler.engine.port import Runtime
from reconciler.model import DesiredState, ObservedContainer, ObservedState, ServiceSpec

Verdict = Literal["healthy", "waiting", "failed"]

DEFAULT_SETTLE = 5.0
"""Seconds a service without a healthcheck must keep running before it counts as healthy."""
POLL_INTERVAL = 0.5


@dataclass(frozen=True, slots=True)
class ServiceVerdict:
    """The gate's view of one service: ``name`` is ``stack/service``."""

    name: str
    verdict: Verdict
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}" if self.reason else self.name


@dataclass(frozen=True, slots=True)
class Assessment:
    """The verdict on one snapshot: failed if any service failed, else waiting if any waits."""

    verdict: Verdict
    services: tuple[ServiceVerdict, ...]

    def reason(self, verdict: Verdict) -> str:
        """The reasons of every service with ``verdict``, joined with ``; ``."""
        return "; ".join(str(s) for s in self.services if s.verdict == verdict)


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The result of :func:`verify`; ``reason`` is empty when healthy."""

    healthy: bool
    reason: str
    services: tuple[ServiceVerdict, ...]
    elapsed: float


def has_healthcheck(spec: ServiceSpec) -> bool:
    return spec.healthcheck is not None and spec.healthcheck.test[:1] != ("NONE",)


def baseline_restarts(observed: ObservedState) -> dict[str, int]:
    """Restart counts by container id, taken right after apply (the "no new restarts" base)."""
    return {c.id: c.restart_count for c in observed.containers}


def _judge(
    spec: ServiceSpec, found: list[ObservedContainer], baseline: Mapping[str, int]
) -> ServiceVerdict:
    name = f"{spec.stack}/{spec.service}"
    if not found:
        return ServiceVerdict(name, "failed", "container is missing")
    if len(found) > 1:
        return ServiceVerdict(name, "failed", f"{len(found)} containers instead of one")
    c = found[0]
    if c.config_hash != spec.config_hash:
        return ServiceVerdict(name, "failed", "container does not run the desired configuration")
    restarts = c.restart_count - baseline.get(c.id, 0)
    code = "unknown" if c.exit_code is None else str(c.exit_code)
    if c.state in ("exited", "dead"):
        return ServiceVerdict(name, "failed", f"exited with code {code}")
    if c.state == "restarting":
        return ServiceVerdict(name, "failed", f"restarting after exit code {code}")
    if restarts > 0:
        last = "" if c.exit_code is None else f", last exit code {c.exit_code}"
        return ServiceVerdict(name, "failed", f"restarted {restarts} time(s){last}")
    if c.state == "created":
        return ServiceVerdict(name, "waiting", "not started")
    if c.state != "running":
        return ServiceVerdict(name, "failed", f"is {c.state}")
    if c.health == "unhealthy":
        return ServiceVerdict(name, "failed", "unhealthy")
    if c.health == "starting":
        return ServiceVerdict(name, "waiting", "health check starting")
    if c.health is None and has_healthcheck(spec):
        return ServiceVerdict(name, "waiting", "no health status yet")
    return ServiceVerdict(name, "healthy")


def assess(
    desired: DesiredState, observed: ObservedState, baseline: Mapping[str, int]
) -> Assessment:
    """Judge every desired service in one snapshot (pure: no I/O, no clock)."""
    verdicts = tuple(
        _judge(
            spec,
            [c for c in observed.containers if (c.stack, c.service) == (spec.stack, spec.service)],
            baseline,
        )
        for spec in desired.services
    )
    kinds = {v.verdict for v in verdicts}
    overall: Verdict = (
        "failed" if "failed" in kinds else "waiting" if "waiting" in kinds else "healthy"
    )
    return Assessment(overall, verdicts)


def gate_timeout(desired: DesiredState) -> float:
    """The longest ``health_timeout`` of the device's stacks (0 without stacks)."""
    return max((s.health_timeout for s in desired.stacks if s.services), default=0.0)


def verify(
    runtime: Runtime,
    desired: DesiredState,
    baseline: Mapping[str, int],
    *,
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    settle: float = DEFAULT_SETTLE,
    interval: float = POLL_INTERVAL,
) -> HealthReport:
    """Poll until every desired service is healthy, one fails, or ``timeout`` passes.

    ``timeout`` defaults to :func:`gate_timeout`. Raises only what ``runtime.observe``
    raises (``EngineError``).
    """
    limit = gate_timeout(desired) if timeout is None else timeout
    needs_settle = any(not has_healthcheck(s) for s in desired.services)
    settle_for = min(settle, limit) if needs_settle else 0.0
    start = clock()
    while True:
        assessment = assess(desired, runtime.observe(desired.device), baseline)
        elapsed = clock() - start
        if assessment.verdict == "failed":
            return HealthReport(False, assessment.reason("failed"), assessment.services, elapsed)
        if assessment.verdict == "healthy" and elapsed >= settle_for:
            return HealthReport(True, "", assessment.services, elapsed)
        if elapsed >= limit:
            waiting = assessment.reason("waiting") or "services did not settle"
            return HealthReport(
                False,
                f"not healthy within {limit:g}s: {waiting}",
                assessment.services,
                elapsed,
            )
        sleep(min(interval, max(limit - elapsed, 0.01)))
