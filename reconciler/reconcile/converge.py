"""Convergence: one observe → plan → apply → health run toward one desired state.

The reconcile pass runs it toward the candidate revision and, when that fails its
gate, toward the stored last-good state: a rollback is the same run with another
target. Nothing here decides *what* to converge to; :mod:`reconciler.reconcile.run` does.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from os.path import lexists
from pathlib import Path
from typing import Literal, Protocol

from structlog.typing import FilteringBoundLogger

from reconciler.engine import health
from reconciler.engine.apply import ConfigReader, apply
from reconciler.engine.port import Runtime
from reconciler.errors import EngineError, HealthError, ImageUnavailable, SourceError
from reconciler.manifests.tree import RepoTree
from reconciler.model import DesiredState, ObservedState
from reconciler.plan.planner import DESTRUCTIVE_KINDS, Plan, Step, plan, pull_ahead


class Clock(Protocol):
    """Wall time for records, monotonic time and sleep for the health gate."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


ConvergeStage = Literal["plan", "gate", "pull", "apply", "health", "done"]


@dataclass(frozen=True, slots=True)
class Convergence:
    """One observe → plan → apply → health run toward one desired state.

    ``stage`` is where it stopped (``done`` when it went through); ``error`` says why
    it stopped early or failed the gate; ``done`` lists the steps that were applied.
    ``changed``: a step failed after a destructive one ran (something running was
    stopped or removed), so the failure is a failed release, not a retryable error;
    ``error`` then names the failing step.
    """

    revision: str
    plan: Plan | None
    done: tuple[Step, ...] = ()
    stage: ConvergeStage = "done"
    error: str | None = None
    report: health.HealthReport | None = None
    changed: bool = False

    @property
    def healthy(self) -> bool:
        return self.error is None and (self.report is None or self.report.healthy)

    def summary(self) -> str:
        waited = "" if self.report is None else f"; healthy after {self.report.elapsed:.1f}s"
        return f"{len(self.done)} step(s) applied toward {self.revision}{waited}"

    def to_json(self) -> dict[str, object]:
        return {
            "revision": self.revision,
            "stage": self.stage,
            "error": self.error,
            "changed": self.changed,
            "healthy": self.healthy,
            "steps": [s.to_json() for s in self.done],
            "blocked": [] if self.plan is None else list(self.plan.blocked),
            "notes": [] if self.plan is None else list(self.plan.notes),
            "services": []
            if self.report is None
            else [
                {"service": v.name, "verdict": v.verdict, "reason": v.reason}
                for v in self.report.services
            ],
        }


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """Config file contents for apply: from the tree when it still has the content.

    A rollback converges to a state rendered from an older revision; its config files
    were materialized (content-addressed) when that revision was applied, so a file the
    current tree no longer has is read back from its host path. The digest is checked
    either way.
    """

    tree: RepoTree
    state: DesiredState

    def read(self, repo_path: str) -> bytes:
        wanted = {
            c.digest: c.host_path
            for st in self.state.stacks
            for c in st.config_files
            if c.repo_path == repo_path
        }
        for data in self._contents(repo_path, wanted.values()):
            if not wanted or f"sha256:{sha256(data).hexdigest()}" in wanted:
                return data
        raise EngineError(f"config file {repo_path} of {self.state.revision} is not available")

    def _contents(self, repo_path: str, hosts: Iterable[str]) -> Iterator[bytes]:
        """The tree's file first, then each materialized copy; unreadable ones are skipped."""
        with contextlib.suppress(OSError):
            if self.tree.kind(repo_path) == "file":
                yield self.tree.read_bytes(repo_path)
        for host in hosts:
            with contextlib.suppress(OSError):
                yield Path(host).read_bytes()

    read_bytes = read


def existing_paths(desired: DesiredState) -> frozenset[str]:
    """The data, lock, config and seed paths of ``desired`` that exist on this host."""
    paths: set[str] = set()
    for st in desired.stacks:
        paths.update(st.data_dirs)
        if st.lock_dir:
            paths.add(st.lock_dir)
        for c in st.config_files:
            paths.update((c.host_path, c.host_path.rsplit("/", 1)[0] or "/"))
    seeds = {c.host_path for st in desired.stacks for c in st.seed_files}  # even as a link
    return frozenset(p for p in paths if Path(p).exists()) | {p for p in seeds if lexists(p)}


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """One observation of this host for one target: managed containers, images,
    networks (the engine) and which of the target's host paths exist."""

    observed: ObservedState
    paths: frozenset[str]


def observe_host(runtime: Runtime, desired: DesiredState) -> HostSnapshot:
    """Observe the engine and the host paths of ``desired`` once (engine errors propagate).

    The planner's view (``brief``): no restart counts, so no inspect per container."""
    return HostSnapshot(runtime.observe(desired.device, brief=True), existing_paths(desired))


@dataclass(frozen=True, slots=True)
class PassSteps:
    """The steps one convergence runs (see :func:`steps_toward`).

    ``plan`` converges to the target; ``early`` pulls images ahead and runs first;
    ``gated`` (a closed update window): only ``early`` runs, ``plan`` waits.
    """

    plan: Plan
    early: Plan
    gated: bool = False

    @property
    def to_run(self) -> tuple[Step, ...]:
        """Exactly the steps the executor will run, in order (none when blocked)."""
        if self.plan.blocked:
            return ()
        return self.early.steps if self.gated else (*self.early.steps, *self.plan.steps)

    @property
    def waiting(self) -> tuple[Step, ...]:
        """The steps that wait for the window (not run by this pass)."""
        return self.plan.steps if self.gated and not self.plan.blocked else ()


def steps_toward(
    desired: DesiredState,
    host: HostSnapshot,
    *,
    ahead: DesiredState | None = None,
    gated: bool = False,
    untouched: frozenset[str] = frozenset(),
) -> PassSteps:
    """What a convergence toward ``desired`` runs on ``host`` (pure; shared by plan and apply).

    ``ahead``: a state whose missing images are pulled first. ``gated``: a closed window
    stops a non-empty plan before any container is touched: only the pull-ahead of
    ``ahead`` (else of ``desired``) runs. ``untouched`` stacks are never pruned.
    """
    observed = host.observed
    steps = plan(desired, observed, existing_paths=host.paths, untouched=untouched)
    if gated and not steps.is_empty:
        return PassSteps(steps, pull_ahead(ahead or desired, observed), gated=True)
    pulled = [s.image for s in steps.steps if s.kind == "pull"]
    early = pull_ahead(ahead, observed, skip=pulled) if ahead is not None else Plan(())
    return PassSteps(steps, early)


def converge(
    desired: DesiredState,
    revision: str,
    *,
    runtime: Runtime,
    configs: ConfigReader,
    clock: Clock,
    log: FilteringBoundLogger,
    before_apply: Callable[[], None],
    on_applied: Callable[[], None],
    check_unchanged: bool,
    hold: str | None = None,
    ahead: DesiredState | None = None,
    untouched: frozenset[str] = frozenset(),
    health_timeout: float | None = None,
    settle: float = health.DEFAULT_SETTLE,
) -> Convergence:
    """Observe, plan (:func:`steps_toward`), apply and verify; stop at the first failure.

    ``before_apply`` runs once before the first container step (the caller records the
    attempt), ``on_applied`` once every step ran. An empty plan skips the health gate
    unless ``check_unchanged`` (the state was applied but never confirmed healthy).
    ``hold`` (why a closed update window gates the pass) stops a non-empty plan before
    any container is touched; a pull ahead that fails then is noted in the error, not
    raised. Engine errors while observing propagate; every other failure is in the result.
    """
    rev = revision
    host = observe_host(runtime, desired)
    run = steps_toward(desired, host, ahead=ahead, gated=hold is not None, untouched=untouched)
    steps = run.plan
    log.info("plan.made", target=rev, steps=len(steps.steps), blocked=len(steps.blocked))
    if steps.blocked:
        return Convergence(rev, steps, stage="plan", error="; ".join(steps.blocked))
    if run.gated:
        try:
            done = _run(run.early, runtime, configs, log, clock)
        except (ImageUnavailable, EngineError) as e:
            return Convergence(rev, steps, stage="gate", error=f"{hold}; pulling ahead: {e}")
        return Convergence(rev, steps, done, stage="gate", error=hold)
    applied: list[Step] = []
    try:
        done = _run(run.early, runtime, configs, log, clock)
        if not steps.is_empty:
            before_apply()
            done += _run(steps, runtime, configs, log, clock, on_step=applied.append)
            on_applied()
    except HealthError as e:
        return Convergence(rev, steps, (*done, *steps.steps), stage="health", error=str(e))
    except (ImageUnavailable, EngineError, SourceError) as e:
        if any(s.kind in DESTRUCTIVE_KINDS for s in applied):
            failed = steps.steps[len(applied)].describe().split(":", 1)[0]
            why = f"{failed} failed: {e}"
            return Convergence(rev, steps, tuple(applied), "apply", why, changed=True)
        if isinstance(e, ImageUnavailable):
            return Convergence(rev, steps, stage="pull", error=str(e))
        return Convergence(rev, steps, stage="apply", error=str(e))
    if steps.is_empty and not check_unchanged:
        return Convergence(rev, steps, done)
    baseline = health.baseline_restarts(runtime.observe(desired.device))
    report = health.verify(
        runtime,
        desired,
        baseline,
        timeout=health_timeout,
        clock=clock.monotonic,
        sleep=clock.sleep,
        settle=settle,
    )
    log.info("health.verified", target=rev, healthy=report.healthy, reason=report.reason)
    error = None if report.healthy else report.reason
    return Convergence(rev, steps, done, "done" if report.healthy else "health", error, report)


def _run(
    steps: Plan,
    runtime: Runtime,
    configs: ConfigReader,
    log: FilteringBoundLogger,
    clock: Clock,
    *,
    on_step: Callable[[Step], None] | None = None,
) -> tuple[Step, ...]:
    """Apply ``steps`` (nothing when empty); the steps done."""
    if steps.is_empty:
        return ()
    result = apply(
        steps, runtime, configs, log, clock=clock.monotonic, sleep=clock.sleep, on_step=on_step
    )
    return result.steps_done
