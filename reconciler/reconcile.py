"""One reconcile pass for one device: fetch → build → gate → plan → apply → health → status.

:func:`reconcile_once` reads the repository tree (already fetched by the source), renders
this device's desired state, checks policy, decides what to converge toward, and then
runs the same small pipeline for every target: observe → plan → apply → health. A
rollback is not a second code path: it is that pipeline pointed at the stored last-good
desired state. Adapters (runtime, store) decide nothing; every decision here is made on
values, and :func:`decide` is pure.

Outcomes (``PassResult.outcome``), each with a one-line reason and the stage it ended in:

- ``succeeded``: the device runs the desired revision and it passed the health gate;
- ``rejected``: the repository, this device's render, or the policy check failed;
  nothing was touched (safety rule 3);
- ``failed-no-change``: nothing was changed: a pull failed (download-then-kill), the
  plan was blocked, or the desired revision already failed its health gate (it is not
  retried until the revision changes or ``retry`` is set);
- ``rolled-back``: the update failed its gate and the device was converged back to its
  last good revision (also when a pass finishes an interrupted rollback);
- ``rollback-failed``: the update failed and so did the way back;
- ``failed``: anything else (engine errors, a failed first-ever update with no last
  good state to return to: the device is left as it is);
- ``deferred``: the change is an update (not drift repair of the applied revision) and
  the device's update windows are closed; nothing was changed.

The device record (:class:`reconciler.store.DeviceRecord`) is saved before anything is
touched ("attempted"), after apply ("applied"), when a revision fails, and in a
``finally`` with the outcome, whatever happened. Crash points (see
:mod:`reconciler.crashpoints`) mark the places a test kills the process; a crash at any
of them is recovered by the next pass, because the target depends only on the desired
revision, the record and what runs. The pass's own points are ``reconcile.after-attempt``,
``reconcile.after-apply``, ``reconcile.before-good-recorded`` and
``reconcile.after-failure-recorded``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from reconciler import health
from reconciler import policy as policy_mod
from reconciler.apply import ConfigReader
from reconciler.convergence import Clock, ConfigSource, Convergence, SystemClock, converge
from reconciler.crashpoints import crashpoint
from reconciler.errors import (
    Finding,
    FleetgateError,
    ManifestError,
)
from reconciler.manifests import load_repository
from reconciler.model import DesiredState, Policy
from reconciler.render import render_device
from reconciler.rollout import Target, decide, fingerprint, revision_id, window_hold
from reconciler.runtime import Runtime
from reconciler.store import DeviceRecord, StateStore, rfc3339
from reconciler.tree import RepoTree

Outcome = Literal[
    "succeeded",
    "failed-no-change",
    "rolled-back",
    "rollback-failed",
    "rejected",
    "failed",
    "deferred",
]
OUTCOMES: tuple[Outcome, ...] = (
    "succeeded",
    "failed-no-change",
    "rolled-back",
    "rollback-failed",
    "rejected",
    "failed",
    "deferred",
)
Stage = Literal[
    "manifests", "render", "policy", "decide", "gate", "plan", "apply", "health", "rollback"
]

# ---------------------------------------------------------------------------- result


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass did. ``to_json`` has stable snake_case fields and RFC 3339 UTC times."""

    device: str
    outcome: Outcome
    reason: str
    stage: Stage | None
    revision: str | None  # the desired revision (full SHA; None outside Git)
    target: str | None = None  # the revision converged toward
    update: Convergence | None = None
    rollback: Convergence | None = None
    findings: tuple[Finding, ...] = ()
    applied_revision: str | None = None
    last_good_revision: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def converged(self) -> bool:
        return self.outcome == "succeeded"

    def to_json(self) -> dict[str, object]:
        return {
            "device": self.device,
            "outcome": self.outcome,
            "reason": self.reason,
            "stage": self.stage,
            "revision": self.revision,
            "target": self.target,
            "update": None if self.update is None else self.update.to_json(),
            "rollback": None if self.rollback is None else self.rollback.to_json(),
            "findings": [f.to_json() for f in self.findings],
            "applied_revision": self.applied_revision,
            "last_good_revision": self.last_good_revision,
            "started_at": None if self.started_at is None else rfc3339(self.started_at),
            "finished_at": None if self.finished_at is None else rfc3339(self.finished_at),
        }


def build_desired(
    tree: RepoTree,
    revision: str | None,
    device: str,
    state_dir: str,
    *,
    local: Policy | None = None,
    at: Callable[[Stage], None] = lambda _: None,
) -> DesiredState:
    """Load, render and policy-check ``device``; raise ``ManifestError`` with every finding.

    Any finding anywhere in the repository rejects the pass: a file with a finding is
    left out of the loaded repository, so rendering around it could drop a stack.
    ``at`` is told each stage as it starts (the pass reports where it stopped).
    """
    at("manifests")
    repo, findings = load_repository(tree, revision)
    if findings:
        raise ManifestError(findings)
    at("render")
    rendered = render_device(repo, tree, device, state_dir=state_dir)
    at("policy")
    fleet = repo.fleet.policy
    violations = policy_mod.check(
        rendered, fleet if local is None else policy_mod.narrow(fleet, local)
    )
    if violations:
        raise ManifestError(violations)
    state: DesiredState = rendered.state
    return state if state.revision == revision else dataclasses.replace(state, revision=revision)


# ------------------------------------------------------------------------------ pass


def reconcile_once(
    *,
    tree: RepoTree,
    revision: str | None,
    device: str,
    state_dir: Path | str,
    runtime: Runtime,
    store: StateStore,
    policy: Policy | None = None,
    retry: bool = False,
    clock: Clock | None = None,
    health_timeout: float | None = None,
    settle: float = health.DEFAULT_SETTLE,
    ignore_windows: bool = False,
    log: Any = None,
) -> PassResult:
    """Converge ``device`` once toward ``revision`` of ``tree`` (see the module docstring).

    ``policy`` is the agent's local policy; it can only narrow the fleet's.
    ``ignore_windows`` lets an update start outside the update windows. Raises only
    for programming errors; every :class:`FleetgateError` becomes an outcome.
    """
    the_clock = clock or SystemClock()
    bound = (log or structlog.get_logger()).bind(device=device, revision=revision)
    run = _Pass(
        runtime, store, clock=the_clock, log=bound, health_timeout=health_timeout, settle=settle
    )
    run.start(revision)
    try:
        result = run.execute(
            tree,
            revision,
            str(state_dir),
            local=policy,
            retry=retry,
            ignore_windows=ignore_windows,
        )
    except FleetgateError as e:
        result = run.result("failed", str(e))
    finally:
        run.publish()
    return result


class _Pass:
    """Working memory of one :func:`reconcile_once` call (never escapes it)."""

    def __init__(
        self,
        runtime: Runtime,
        store: StateStore,
        *,
        clock: Clock,
        log: Any,
        health_timeout: float | None,
        settle: float,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.clock = clock
        self.log = log
        self.health_timeout = health_timeout
        self.settle = settle
        self.record = store.load()
        self.stage: Stage | None = None
        self.revision: str | None = None
        self.target: str | None = None
        self.update: Convergence | None = None
        self.rollback: Convergence | None = None
        self.findings: tuple[Finding, ...] = ()
        self.outcome: tuple[Outcome, str] = ("failed", "the pass did not finish")
        self.started = clock.now()

    def start(self, revision: str | None) -> None:
        self.revision = revision
        self.log.info("pass.started", applied=self.record.last_applied is not None)

    def result(self, outcome: Outcome, reason: str) -> PassResult:
        self.outcome = (outcome, reason)
        rec = self.record
        return PassResult(
            device=self.store.device,
            outcome=outcome,
            reason=reason,
            stage=self.stage,
            revision=self.revision,
            target=self.target,
            update=self.update,
            rollback=self.rollback,
            findings=self.findings,
            applied_revision=None if rec.last_applied is None else rec.last_applied.revision,
            last_good_revision=None if rec.last_good is None else rec.last_good.revision,
            started_at=self.started,
            finished_at=self.clock.now(),
        )

    def publish(self) -> None:
        """Save the record with the outcome (called in a ``finally``)."""
        outcome, reason = self.outcome
        self.record = self.record.finished(outcome, reason, self.clock.now())
        self.store.save(self.record)
        self.log.info("pass.finished", outcome=outcome, reason=reason, stage=self.stage)

    def save(self, record: DeviceRecord) -> None:
        self.record = record
        self.store.save(record)

    # ----------------------------------------------------------------- pipeline

    def execute(
        self,
        tree: RepoTree,
        revision: str | None,
        state_dir: str,
        *,
        local: Policy | None,
        retry: bool,
        ignore_windows: bool,
    ) -> PassResult:
        desired = self.build(tree, revision, state_dir, local)
        if desired is None:
            return self.result("rejected", str(ManifestError(self.findings)))
        self.stage = "decide"
        target = decide(self.record, desired, retry=retry)
        self.target = target.revision
        if target.kind == "hold":
            self.log.warning("pass.held", reason=target.reason)
            return self.result("failed-no-change", target.reason)
        if target.kind == "last-good":
            return self.stay_on_last_good(target, tree)
        hold = None if ignore_windows else window_hold(self.record, desired, self.clock.now())
        return self.update_to(desired, target.revision, tree, hold)

    def build(
        self, tree: RepoTree, revision: str | None, state_dir: str, local: Policy | None
    ) -> DesiredState | None:
        """The desired state; ``None`` (with ``findings`` set) when rejected."""
        try:
            return build_desired(
                tree, revision, self.store.device, state_dir, local=local, at=self._at
            )
        except ManifestError as e:
            self.findings = e.findings
            return None

    def _at(self, stage: Stage) -> None:
        self.stage = stage

    def update_to(
        self, desired: DesiredState, rev: str, tree: RepoTree, hold: str | None
    ) -> PassResult:
        """Converge toward the candidate; on a failed gate, record it and roll back."""
        confirmed = self.record.last_good is not None and self.record.last_good.revision == rev
        self.stage = "plan"
        conv = self.converge(
            desired,
            tree,
            before_apply=lambda: self._attempt(rev),
            check_unchanged=not confirmed,
            hold=hold,
        )
        self.update = conv
        if conv.stage == "gate":
            self.stage = "gate"
            return self.result("deferred", conv.error or "")
        if conv.stage in ("plan", "pull"):
            self.stage = "plan" if conv.stage == "plan" else "apply"
            return self.result("failed-no-change", conv.error or "")
        if conv.stage == "apply":
            self.stage = "apply"
            return self.result("failed", conv.error or "")
        if conv.report is None and conv.healthy:
            return self.result("succeeded", "already converged; nothing to do")
        self.stage = "health"
        if conv.healthy:
            crashpoint("reconcile.before-good-recorded")
            self.save(self.record.good(rev, desired, self.clock.now()))
            return self.result("succeeded", conv.summary())
        reason = conv.error or "health gate failed"
        if confirmed:  # drift repair of the last good revision: nothing to return to
            return self.result("failed", reason)
        self.log.warning("update.failed", reason=reason)
        self.save(self.record.failed_with(rev, fingerprint(desired), reason, self.clock.now()))
        crashpoint("reconcile.after-failure-recorded")
        return self.roll_back(f"revision {rev} failed: {reason}", tree)

    def roll_back(self, why: str, tree: RepoTree) -> PassResult:
        """A normal convergence toward the stored last good state (nothing if there is none)."""
        good, state = self.record.last_good, self.record.last_good_state
        if good is None or state is None:
            return self.result("failed", f"{why}; no last good revision to roll back to")
        self.stage = "rollback"
        self.target = good.revision
        self.log.warning("rollback.started", to=good.revision)
        conv = self.converge(
            state, ConfigSource(tree, state), before_apply=lambda: None, check_unchanged=True
        )
        self.rollback = conv
        if not conv.healthy:
            return self.result(
                "rollback-failed", f"{why}; rollback to {good.revision}: {conv.error}"
            )
        self.save(self.record.applied(good.revision, self.clock.now()))
        return self.result("rolled-back", f"{why}; rolled back to {good.revision}")

    def stay_on_last_good(self, target: Target, tree: RepoTree) -> PassResult:
        """The desired revision failed before: keep (or put back) the last good state."""
        state = target.state
        assert state is not None  # decide() gives last-good targets a state
        self.stage = "rollback"
        conv = self.converge(
            state, ConfigSource(tree, state), before_apply=lambda: None, check_unchanged=False
        )
        if conv.report is None and conv.healthy:
            return self.result("failed-no-change", target.reason)
        self.rollback = conv
        if not conv.healthy:
            return self.result(
                "rollback-failed", f"{target.reason}; back to {target.revision}: {conv.error}"
            )
        self.save(self.record.applied(target.revision, self.clock.now()))
        return self.result("rolled-back", f"{target.reason}; restored {target.revision}")

    def _attempt(self, rev: str) -> None:
        self.save(self.record.attempted(rev, self.clock.now()))
        crashpoint("reconcile.after-attempt")

    def converge(
        self,
        desired: DesiredState,
        configs: ConfigReader,
        *,
        before_apply: Callable[[], None],
        check_unchanged: bool,
        hold: str | None = None,
    ) -> Convergence:
        rev = revision_id(desired)
        return converge(
            desired,
            rev,
            runtime=self.runtime,
            configs=configs,
            clock=self.clock,
            log=self.log,
            before_apply=before_apply,
            on_applied=lambda: self._applied(rev),
            check_unchanged=check_unchanged,
            hold=hold,
            health_timeout=self.health_timeout,
            settle=self.settle,
        )

    def _applied(self, rev: str) -> None:
        self.save(self.record.applied(rev, self.clock.now()))
        crashpoint("reconcile.after-apply")
