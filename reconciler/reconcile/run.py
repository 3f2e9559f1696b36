"""One reconcile pass for one device: fetch → build → gate → plan → apply → health → status.

:func:`reconcile_once` reads the repository tree (already fetched by the source), builds
this device's desired state (:mod:`reconciler.render.desired`), decides once what to converge
toward and what waits (:func:`reconciler.decide.passplan.decide`, the same call ``fleetgate
plan`` makes), and then follows that :class:`~reconciler.decide.passplan.PassPlan`: observe →
plan → apply → health (:mod:`reconciler.reconcile.converge`). A rollback is not a second
code path: it is that pipeline pointed at the stored last-good desired state, whether
the candidate failed its gate in this pass or in an earlier one. Adapters (runtime,
store) decide nothing.

Gates (safety rule 6): an update waits while the update windows are closed (only its
images are pulled ahead); stacks whose application holds ``updates.lock``
(``held_stacks``, observed by the caller and computed with :mod:`reconciler.decide.gates`) keep
their last good definition while the rest of the update goes ahead, their new images
pulled ahead. Either way the outcome is ``waiting`` and the revision is not recorded
as applied.
Outcomes and the result are described in :mod:`reconciler.reconcile.outcome`.

The device record (:class:`reconciler.record.DeviceRecord`) is saved before anything is
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
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from reconciler import validated
from reconciler.crashpoints import crashpoint
from reconciler.decide.passplan import Gates, PassPlan, decide
from reconciler.decide.rollout import fingerprint
from reconciler.engine import health
from reconciler.engine.apply import ConfigReader
from reconciler.engine.port import Runtime
from reconciler.errors import Finding, FleetgateError, ManifestError
from reconciler.manifests.tree import RepoTree
from reconciler.model import DesiredState, Policy
from reconciler.reconcile.converge import Clock, ConfigSource, Convergence, SystemClock, converge
from reconciler.reconcile.outcome import (
    OUTCOMES,
    STOPPED_AT,
    Outcome,
    PassResult,
    join_reasons,
    unwritable_record,
)
from reconciler.record import DeviceRecord
from reconciler.stages import Stage
from reconciler.store import StateStore

__all__ = [
    "OUTCOMES",
    "Outcome",
    "PassResult",
    "Stage",
    "reconcile_desired",
    "reconcile_once",
]


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
    remember: bool = False,
    record: DeviceRecord | None = None,
) -> PassResult:
    """Converge ``device`` once toward ``revision`` of ``tree`` (see the module docstring).

    ``policy`` is the agent's local policy; it can only narrow the fleet's.
    ``ignore_windows`` lets an update (and drift repair) start outside the update
    windows. ``held_stacks``: stacks whose application holds ``updates.lock``; a mapping
    to the end of each deferral (``LockGate.held``) puts that time in the reason.
    ``repair_drift=False`` makes drift repair of the applied revision wait for a window
    too. ``remember``: a desired state that passed validation is kept in the state
    directory and reused while the tree, device and policy are unchanged
    (:mod:`reconciler.validated`). Raises only for programming errors; every
    :class:`FleetgateError` becomes an outcome. ``record``: the device record the caller
    just loaded from ``store`` under its lock (read once, not twice).
    """
    until = held_stacks if isinstance(held_stacks, Mapping) else dict.fromkeys(held_stacks)
    gates = Gates(dict(until), ignore_windows, retry, repair_drift)
    run = _Pass(
        runtime,
        store,
        clock=clock,
        log=log,
        health_timeout=health_timeout,
        settle=settle,
        record=record,
    )
    return run.run(
        revision,
        lambda: run.build(tree, revision, str(state_dir), policy, remember=remember),
        tree,
        gates,
    )


def reconcile_desired(
    desired: DesiredState,
    *,
    tree: RepoTree,
    runtime: Runtime,
    store: StateStore,
    gates: Gates,
    clock: Clock | None = None,
    health_timeout: float | None = None,
    settle: float = health.DEFAULT_SETTLE,
    log: Any = None,
) -> PassResult:
    """The pass of :func:`reconcile_once` for an already built desired state.

    ``tree`` only serves config file contents.
    """
    run = _Pass(runtime, store, clock=clock, log=log, health_timeout=health_timeout, settle=settle)
    return run.run(desired.revision, lambda: desired, tree, gates)


class _Pass:
    """Working memory of one :func:`reconcile_once` call (never escapes it)."""

    def __init__(
        self,
        runtime: Runtime,
        store: StateStore,
        *,
        clock: Clock | None,
        log: Any,
        health_timeout: float | None,
        settle: float,
        record: DeviceRecord | None = None,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.log = (log or structlog.get_logger()).bind(device=store.device)
        self.health_timeout = health_timeout
        self.settle = settle
        self.record = store.load() if record is None else record
        self.stage: Stage | None = None
        self.revision: str | None = None
        self.target: str | None = None
        self.update: Convergence | None = None
        self.rollback: Convergence | None = None
        self.findings: tuple[Finding, ...] = ()
        self.held: tuple[str, ...] = ()
        self.next_window: datetime | None = None
        self.outcome: tuple[Outcome, str] = ("failed", "the pass did not finish")
        self.started = self.clock.now()

    def run(
        self,
        revision: str | None,
        build: Callable[[], DesiredState | None],
        tree: RepoTree,
        gates: Gates,
    ) -> PassResult:
        """Build, decide and follow the pass plan; the record is saved whatever happens."""
        self.revision = revision
        self.log = self.log.bind(revision=revision)
        self.log.info("pass.started", applied=self.record.last_applied is not None)
        try:
            return self.execute(build, tree, gates)
        except FleetgateError as e:
            return self.result("failed", str(e))
        finally:
            self.publish()

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
        try:
            self.store.save(self.record)
        except OSError as e:  # a full disk: the pass already says so, never a traceback
            self.log.error("record.unsaved", error=unwritable_record(e))
        self.log.info("pass.finished", outcome=outcome, reason=reason, stage=self.stage)

    def save(self, record: DeviceRecord) -> None:
        self.record = record
        try:
            self.store.save(record)
        except OSError as e:
            raise FleetgateError(unwritable_record(e)) from None

    # ----------------------------------------------------------------- pipeline

    def execute(
        self, build: Callable[[], DesiredState | None], tree: RepoTree, gates: Gates
    ) -> PassResult:
        desired = build()
        if desired is None:
            return self.result("rejected", str(ManifestError(self.findings)))
        self.stage = Stage.DECIDE
        decided = decide(self.record, desired, gates, self.clock.now())
        self.target = decided.target_revision
        self.held = decided.held_stacks
        failure = decided.failure
        if decided.kind == "hold" and failure is not None:
            self.log.warning("pass.held", reason=failure.describe())
            return self.result("failed-no-change", failure.describe())
        if decided.kind == "rollback" and failure is not None:
            return self.roll_back(failure.describe(), tree, after_failure=False)
        return self.update_to(desired, decided, tree)

    def build(
        self,
        tree: RepoTree,
        revision: str | None,
        state_dir: str,
        local: Policy | None,
        *,
        remember: bool = False,
    ) -> DesiredState | None:
        """The desired state; ``None`` (with ``findings`` set) when rejected.

        ``remember``: recalled from / kept in :mod:`reconciler.validated` (the render
        modules are then imported only when the tree changed)."""
        try:
            return validated.desired_state(
                tree, revision, self.store.device, state_dir, local,
                at=self._at, log=self.log, remember_it=remember,
            )  # fmt: skip
        except ManifestError as e:
            self.findings = e.findings
            return None

    def _at(self, stage: Stage) -> None:
        self.stage = stage

    def update_to(self, desired: DesiredState, decided: PassPlan, tree: RepoTree) -> PassResult:
        """Converge toward the candidate (held stacks kept); on a failed gate, roll back."""
        rev, held, state = decided.revision, decided.held_stacks, decided.target
        assert state is not None  # decide() gives update and repair plans a target
        wait, lock = decided.window, decided.lock
        lock_reason = "" if lock is None else lock.describe()
        wait_reason = None if wait is None else wait.describe()
        if held:
            self.log.info("lock.held", stacks=list(held), reason=lock_reason)
        self.stage = Stage.PLAN
        conv = self.converge(
            state,
            ConfigSource(tree, state) if held else tree,
            rev=rev,
            before_apply=lambda: self._attempt(rev),
            record_applied=not held,
            check_unchanged=not decided.confirmed and not held,
            hold=wait_reason,
            ahead=decided.ahead,
        )
        self.update = conv
        if wait is not None:
            self.next_window = wait.next_window
        if conv.stage == "apply" and conv.changed and not decided.confirmed:
            # Failed after a destructive step of an update: a failed release (rule 9).
            self.stage = Stage.APPLY
            return self.failed_release(rev, desired, conv.error or "apply failed", tree)
        stopped = STOPPED_AT.get(conv.stage)
        if stopped is not None:
            # Nothing running was touched (or this was drift repair): see STOPPED_AT.
            self.stage, outcome = stopped
            why = (
                join_reasons(conv.error, lock_reason) if outcome == "waiting" else conv.error or ""
            )
            return self.result(outcome, why)
        if held and conv.healthy:
            self.stage = Stage.GATE
            done = conv.summary() if conv.done else None
            return self.result("waiting", join_reasons(lock_reason, wait_reason, done))
        if conv.report is None and conv.healthy:
            return self.result("succeeded", "already converged; nothing to do")
        self.stage = Stage.HEALTH
        if conv.healthy:
            crashpoint("reconcile.before-good-recorded")
            self.save(self.record.good(rev, desired, self.clock.now()))
            return self.result("succeeded", conv.summary())
        reason = conv.error or "health gate failed"
        if decided.confirmed:  # drift repair of the last good revision: nothing to return to
            return self.result("failed", reason)
        return self.failed_release(rev, desired, reason, tree)

    def failed_release(
        self, rev: str, desired: DesiredState, reason: str, tree: RepoTree
    ) -> PassResult:
        """Record ``rev`` as failed (not retried until the desired revision changes), roll back.

        Safety rules 5 and 9: a failed health gate and a step that failed after the old
        container was stopped or removed are the same failed release.
        """
        self.log.warning("update.failed", reason=reason)
        self.save(self.record.failed_with(rev, fingerprint(desired), reason, self.clock.now()))
        crashpoint("reconcile.after-failure-recorded")
        return self.roll_back(f"revision {rev} failed: {reason}", tree, after_failure=True)

    def roll_back(self, why: str, tree: RepoTree, *, after_failure: bool) -> PassResult:
        """A normal convergence toward the stored last good state (the one rollback path).

        ``after_failure``: the candidate just failed its gate in this pass, so the last
        good state is verified even if nothing has to change. Otherwise (it failed in an
        earlier pass) a device already on its last good state is left as it is
        (``failed-no-change``); one that drifted or was interrupted is put back.
        """
        good, state = self.record.last_good, self.record.last_good_state
        if good is None or state is None:
            return self.result("failed", f"{why}; no last good revision to roll back to")
        self.stage = Stage.ROLLBACK
        self.target = good.revision
        if after_failure:
            self.log.warning("rollback.started", to=good.revision)
        conv = self.converge(
            state,
            ConfigSource(tree, state),
            rev=good.revision,
            before_apply=lambda: None,
            check_unchanged=after_failure,
        )
        if not after_failure and conv.report is None and conv.healthy:
            return self.result("failed-no-change", why)
        self.rollback = conv
        if not conv.healthy:
            return self.result(
                "rollback-failed", f"{why}; rollback to {good.revision}: {conv.error}"
            )
        self.save(self.record.applied(good.revision, self.clock.now()))
        return self.result("rolled-back", f"{why}; rolled back to {good.revision}")

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
        """Run :func:`reconciler.reconcile.converge.converge`; held stacks are never pruned."""
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
