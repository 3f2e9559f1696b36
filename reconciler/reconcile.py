"""One reconcile pass for one device: fetch → build → gate → plan → apply → health → status.

:func:`reconcile_once` reads the repository tree (already fetched by the source), builds
this device's desired state (:mod:`reconciler.build`), decides what to converge toward
(:mod:`reconciler.rollout`), and then runs the same small pipeline for every target:
observe → plan → apply → health (:mod:`reconciler.convergence`). A rollback is not a
second code path: it is that pipeline pointed at the stored last-good desired state.
Adapters (runtime, store) decide nothing; every decision is made on values.

Gates (safety rule 6): an update waits while the update windows are closed (only its
images are pulled ahead); stacks whose application holds ``updates.lock``
(``held_stacks``, computed by the agent with :mod:`reconciler.gates`) keep their last
good definition while the rest of the update goes ahead, their new images pulled ahead.
Either way the outcome is ``waiting`` and the revision is not recorded as applied.
Outcomes and the result are described in :mod:`reconciler.outcome`.

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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from reconciler import health
from reconciler.apply import ConfigReader
from reconciler.build import build_desired
from reconciler.convergence import Clock, ConfigSource, Convergence, SystemClock, converge
from reconciler.crashpoints import crashpoint
from reconciler.errors import Finding, FleetgateError, ManifestError
from reconciler.gates import held_reason
from reconciler.model import DesiredState, Policy
from reconciler.outcome import OUTCOMES, Outcome, PassResult, Stage
from reconciler.rollout import (
    Target,
    WindowHold,
    compose_target,
    decide,
    fingerprint,
    held_changes,
    is_update,
    only_stacks,
    window_hold,
)
from reconciler.runtime import Runtime
from reconciler.store import DeviceRecord, StateStore
from reconciler.tree import RepoTree

__all__ = ["OUTCOMES", "Outcome", "PassResult", "Stage", "build_desired", "reconcile_once"]


@dataclass(frozen=True, slots=True)
class _Gates:
    """What the caller allows this pass (see :func:`reconcile_once`)."""

    ignore_windows: bool
    repair_drift: bool
    held: Mapping[str, datetime | None]  # locked stack -> end of its deferral, if known


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
    held_stacks: frozenset[str] | Mapping[str, datetime] = frozenset(),
    repair_drift: bool = True,
    log: Any = None,
) -> PassResult:
    """Converge ``device`` once toward ``revision`` of ``tree`` (see the module docstring).

    ``policy`` is the agent's local policy; it can only narrow the fleet's.
    ``ignore_windows`` lets an update (and drift repair) start outside the update
    windows. ``held_stacks``: stacks whose application holds ``updates.lock``; a mapping
    to the end of each deferral (``LockGate.held``) puts that time in the reason.
    ``repair_drift=False`` makes drift repair of the applied revision wait for a window
    too. Raises only for programming errors; every :class:`FleetgateError` becomes an
    outcome.
    """
    the_clock = clock or SystemClock()
    bound = (log or structlog.get_logger()).bind(device=device, revision=revision)
    run = _Pass(
        runtime, store, clock=the_clock, log=bound, health_timeout=health_timeout, settle=settle
    )
    until = held_stacks if isinstance(held_stacks, Mapping) else dict.fromkeys(held_stacks)
    gates = _Gates(ignore_windows, repair_drift, dict(until))
    run.start(revision)
    try:
        result = run.execute(tree, revision, str(state_dir), local=policy, retry=retry, gates=gates)
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
        self.held: tuple[str, ...] = ()
        self.next_window: datetime | None = None
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
            next_window=self.next_window if outcome == "waiting" else None,
            held_stacks=self.held,
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
        gates: _Gates,
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
        now = self.clock.now()
        wait = (
            None
            if gates.ignore_windows
            else window_hold(self.record, desired, now, repair_drift=gates.repair_drift)
        )
        if is_update(self.record, desired):
            self.held = held_changes(desired, self.record.last_good_state, gates.held)
        lock = held_reason({stack: gates.held.get(stack) for stack in self.held})
        return self.update_to(desired, target.revision, tree, wait, lock)

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
        self, desired: DesiredState, rev: str, tree: RepoTree, wait: WindowHold | None, lock: str
    ) -> PassResult:
        """Converge toward the candidate (held stacks kept); on a failed gate, roll back."""
        confirmed = self.record.last_good is not None and self.record.last_good.revision == rev
        held = self.held
        state = compose_target(desired, self.record.last_good_state, held) if held else desired
        if wait is not None:
            ahead: DesiredState | None = desired
        else:
            ahead = only_stacks(desired, held) if held else None
        if held:
            self.log.info("lock.held", stacks=list(held), reason=lock)
        self.stage = "plan"
        conv = self.converge(
            state,
            ConfigSource(tree, state) if held else tree,
            rev=rev,
            before_apply=lambda: self._attempt(rev),
            record_applied=not held,
            check_unchanged=not confirmed and not held,
            hold=None if wait is None else wait.reason,
            ahead=ahead,
        )
        self.update = conv
        if wait is not None:
            self.next_window = wait.next_window
        if conv.stage == "gate":
            self.stage = "gate"
            return self.result("waiting", _join(conv.error, lock))
        if conv.stage in ("plan", "pull"):
            self.stage = "plan" if conv.stage == "plan" else "apply"
            return self.result("failed-no-change", conv.error or "")
        if conv.stage == "apply":
            self.stage = "apply"
            return self.result("failed", conv.error or "")
        if held and conv.healthy:
            self.stage = "gate"
            done = conv.summary() if conv.done else None
            return self.result("waiting", _join(lock, None if wait is None else wait.reason, done))
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
            state,
            ConfigSource(tree, state),
            rev=good.revision,
            before_apply=lambda: None,
            check_unchanged=True,
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
            state,
            ConfigSource(tree, state),
            rev=target.revision,
            before_apply=lambda: None,
            check_unchanged=False,
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
        rev: str,
        before_apply: Callable[[], None],
        check_unchanged: bool,
        record_applied: bool = True,
        hold: str | None = None,
        ahead: DesiredState | None = None,
    ) -> Convergence:
        """Run :func:`reconciler.convergence.converge`; held stacks are never pruned."""
        return converge(
            desired,
            rev,
            runtime=self.runtime,
            configs=configs,
            clock=self.clock,
            log=self.log,
            before_apply=before_apply,
            on_applied=(lambda: self._applied(rev)) if record_applied else (lambda: None),
            check_unchanged=check_unchanged,
            hold=hold,
            ahead=ahead,
            untouched=frozenset(self.held),
            health_timeout=self.health_timeout,
            settle=self.settle,
        )

    def _applied(self, rev: str) -> None:
        self.save(self.record.applied(rev, self.clock.now()))
        crashpoint("reconcile.after-apply")


def _join(*parts: str | None) -> str:
    """The non-empty parts of a reason, joined with '; '."""
    return "; ".join(p for p in parts if p)
