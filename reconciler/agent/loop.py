"""The agent: a small loop around the reconcile pass (DESIGN.md §4).

One pass at a time. A pass is: source → lock gate → :func:`reconcile_once` → status.

- **Source** (:mod:`reconciler.agent.source`): the checkout to reconcile, from the
  remote, a bundle in a ``watch`` folder or, when the source fails, the last fetched
  checkout / the applied revision (status *source-unreachable*, applications kept).
  A revision refused by the signature or anti-rollback checks (or a refused bundle)
  makes the pass *rejected*: only the applied revision is reconciled (drift repair).
- **Idle passes** skip :func:`reconcile_once` when nothing can have changed: only the
  timer woke the loop, revision and lock files are as in the last full pass, which
  succeeded or was rejected, the Docker event stream (managed containers dying or
  going wake the loop) has been connected throughout and the last full pass is younger
  than ``resyncInterval`` (the safety net of event-driven drift repair).
- **Lock gate**: :func:`reconciler.decide.gates.lock_gate` on the ``updates.lock`` files the
  agent sees under ``{state}/locks/{device}/<stack>/`` (:class:`LockFiles`).
- **Backoff**: consecutive source / engine failures stretch the wait exponentially
  (jittered, capped at ``maxBackoff``); a nudge always runs a pass at once.
- **Stop**: :meth:`Agent.request_stop` (SIGTERM / SIGINT) lets the step in flight
  finish, interrupts the pass at its next wait, writes the status and returns; the
  next start resumes from the stored record (safety rule 7).
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import structlog

from reconciler.agent.config import AgentConfig, config_warnings
from reconciler.agent.memory import release_freed_memory
from reconciler.agent.source import AgentSource, LockFiles, Refresh
from reconciler.agent.triggers import Wakeup, backoff, jittered
from reconciler.decide import gates
from reconciler.engine.port import Runtime
from reconciler.errors import FleetgateError
from reconciler.manifests.tree import RepoTree
from reconciler.model import ObservedState
from reconciler.reconcile.outcome import RETRY, STABLE
from reconciler.reconcile.run import PassResult, reconcile_once
from reconciler.redaction import redact_url
from reconciler.report.http import write_status
from reconciler.report.status import SOURCE_UNREACHABLE, PendingUpdate, Status, Tally, build_status
from reconciler.source import Checkout
from reconciler.store import StateStore

QUIET_REFRESH = 30.0
"""Seconds between status file writes while idle passes change nothing but the heartbeat."""


class Interrupted(BaseException):
    """Raised from the agent's clock while a pass waits and a stop was requested."""


class StatusPublisher(Protocol):
    """Where the agent reports after every pass (the HTTP server reads :meth:`Agent.status`)."""

    def publish(self, status: Status) -> None: ...


class FileStatus:
    """Writes each status to ``{state}/devices/{device}/status.json`` atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def publish(self, status: Status) -> None:
        write_status(self.state_dir, status)


class _AgentClock:
    """The wall / monotonic clock handed to the pass; its ``sleep`` ends at a stop."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if self._stop.wait(max(0.0, seconds)):
            raise Interrupted


@dataclass(frozen=True, slots=True)
class _Last:
    """The facts of the last full pass an idle pass compares against."""

    revision: str | None
    dirty: bool
    locked: frozenset[str]
    outcome: str
    at: float  # monotonic


class Agent:
    """The loop for one device; the composition root builds it with real adapters.

    ``events_connected`` is set while a Docker event stream for the device runs
    (:class:`reconciler.agent.triggers.EngineEventWatch`); without it every pass observes.
    Only the loop's thread changes the agent; :meth:`nudge`, :meth:`request_stop` and
    :meth:`status` are safe from any thread.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        runtime: Runtime,
        store: StateStore,
        publisher: StatusPublisher,
        wakeup: Wakeup | None = None,
        events_connected: threading.Event | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.store = store
        self.publisher = publisher
        self.wakeup = wakeup or Wakeup()
        self._events_connected = events_connected
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._stop_reason = ""
        self._clock = _AgentClock(self._stop)
        self._log = structlog.get_logger().bind(device=config.device)
        self._source = AgentSource(config, self._log, runtime)
        self._soon: float | None = None
        self._last: _Last | None = None
        self._locks = LockFiles(config)
        self._record = store.load()
        self._result: PassResult | None = None
        self._observed: ObservedState | None = None
        self._observed_at: datetime | None = None
        self._pending: PendingUpdate | None = None
        self._tally = Tally()
        self.failures = 0
        self._override: tuple[str, str] | None = None
        self._published_at = -float("inf")
        self.warnings = config_warnings(config)  # in every status, logged at start
        self._status = self._build(_now())

    # ----------------------------------------------------------- thread-safe API

    def nudge(self, reason: str = "nudge") -> None:
        """Run a pass as soon as possible (``POST /reconcile``, SIGHUP). Thread-safe."""
        self.wakeup.nudge(reason)

    def request_stop(self, reason: str = "stop requested") -> None:
        """Finish the step in flight, write the status, leave :meth:`run`. Thread-safe."""
        self._stop_reason = reason
        self._stop.set()
        self.wakeup.nudge("stop")

    def status(self) -> Status:
        """The latest status (an immutable value; safe from any thread)."""
        return self._status

    @property
    def applied(self) -> str | None:
        applied = self._record.last_applied
        return None if applied is None else applied.revision

    # ------------------------------------------------------------------- the loop

    def run(self, *, once: bool = False) -> Status:
        """Pass after pass until a stop is requested (or one pass with ``once``)."""
        self._log.info("agent.started", repo=redact_url(self.config.repo), ref=self.config.ref)
        for warning in self.warnings:
            self._log.warning("agent.config_warning", warning=warning)
        reasons: frozenset[str] = frozenset(("start",))
        while not self._stop.is_set():
            self.run_pass(reasons)
            if once:
                break
            wait = jittered(self.config.poll_interval, self._rng.random())
            if self.failures:
                cap = self.config.max_backoff
                wait = max(wait, backoff(self.failures, wait, cap, self._rng.random()))
            if self._soon is not None:  # a bundle file still being copied
                wait = min(wait, self._soon)
            self._log.debug("agent.waiting", seconds=round(wait, 3), failures=self.failures)
            reasons = self.wakeup.wait(wait) - {"stop"}
        self._publish(self._build(_now()))
        self._log.info("agent.stopped", reason=self._stop_reason or "once")
        return self._status

    def run_pass(self, reasons: frozenset[str]) -> Status:
        """One pass (full or idle); the status is published whatever happens."""
        started = time.monotonic()
        self._override = None
        ran: str | None = "?"
        try:
            ran = self._pass(reasons)
            if ran is not None:
                self._tally = self._tally.counted(ran, time.monotonic() - started)
                release_freed_memory()  # what the full pass freed, not kept while idle
        except Interrupted:
            why = self._stop_reason or "stop requested"
            self._override = ("interrupted", f"{why}: stopped at a wait; the next start resumes")
        except FleetgateError as e:  # its class says whether waiting longer helps
            self.failures += e.next_step == "retry"
            self._override = ("rejected" if e.next_step == "stall" else "failed", str(e))
        except Exception as e:  # a bug must not end the daemon: report it and back off
            self._log.exception("agent.pass_crashed")
            self.failures += 1
            self._override = ("failed", f"internal error: {type(e).__name__}: {e}")
        finally:
            if self._override is not None:
                self._record = self.store.load()
            previous = _gist(self._status)
            status = self._build(_now())
            self._publish(status, quiet=ran is None and _gist(status) == previous)
        return self._status

    def _publish(self, status: Status, *, quiet: bool = False) -> None:
        """Hand ``status`` to the publisher; a quiet (idle, unchanged) one at most every
        ``max(pollInterval, 30s)`` (the HTTP status always has the latest heartbeat)."""
        self._status = status
        refresh = max(self.config.poll_interval, QUIET_REFRESH)
        if quiet and time.monotonic() - self._published_at < refresh:
            return
        self._source.stick.publish(status)
        try:
            self.publisher.publish(status)
            self._published_at = time.monotonic()
        except (OSError, FleetgateError) as e:
            self._log.warning("status.unpublished", error=str(e))

    def _build(self, now: datetime) -> Status:
        status = build_status(
            self._record,
            now=now,
            last_pass=self._result,
            observed=self._observed,
            pending=self._pending,
            fetch=self._source.fetch,
            desired_revision=self._source.desired,
            poll_interval=self.config.poll_interval,
            heartbeat_at=now,
            counters=self._tally,
        )
        status = dataclasses.replace(status, warnings=self.warnings)
        if status.fetch.error is not None:  # the pass may have run after the failed fetch
            kept = "" if self.applied is None else f"; running {self.applied} is kept"
            why = f"{status.fetch.error}{kept}"
            return dataclasses.replace(status, outcome=SOURCE_UNREACHABLE, reason=why)
        if self._override is not None:
            status = dataclasses.replace(
                status, outcome=self._override[0], reason=self._override[1]
            )
        if self._observed is not None:  # services were observed at the end of the last pass
            status = dataclasses.replace(status, observed_at=self._observed_at)
        return status

    def _pass(self, reasons: frozenset[str]) -> str | None:
        """One pass; the outcome when reconcile ran, ``None`` for an idle pass."""
        now = _now()
        source = self._source.refresh(self._record, now)
        if source.fetch_failed:
            self._tally = self._tally.fetch_failed()
        self._soon = source.recheck_in
        if source.refused is not None:  # also shown by the idle passes that follow
            self._override = ("rejected", source.refused)
        elif source.waiting is not None:  # a wave not started: what runs is kept
            self._override = ("waiting", source.waiting)
        checkout = source.checkout
        if checkout is None:
            self.failures += source.refused is None and source.waiting is None
            return None if source.refused is None else "rejected"
        locked = self._locks.locked()
        if self._idle(reasons, source, locked):
            return None
        pending = self.applied is None or checkout.revision != self.applied
        gate = gates.lock_gate(
            locked,
            self._locks.first_seen,
            now,
            timedelta(seconds=self.config.max_defer),
            update_pending=pending,
        )
        self._locks.keep_first_seen(gate.first_seen)
        for stack in sorted(gate.expired):
            self._log.warning("lock.expired", stack=stack, max_defer=self.config.max_defer)
        done = self._reconcile(checkout, gate, reasons)
        result = _sticky(self._result, done)
        self._result = result
        self._record = self.store.load()
        self._observe()
        self._pending = _pending(result, gate, checkout)
        outcome: str = done.outcome  # counted as it happened; the status may stay sticky
        if source.refused is not None and outcome in STABLE:
            outcome, self._pending = "rejected", None  # what runs was kept or repaired
        elif source.waiting is not None and outcome in STABLE:
            outcome = "waiting"
        else:
            self._override = None
        self._last = _Last(source.desired, checkout.dirty, locked, outcome, time.monotonic())
        if result.outcome == "succeeded" and checkout.revision is not None:
            keep = (checkout.revision, result.applied_revision, result.last_good_revision)
            self._source.prune({r for r in keep if r})
        failed = self._source.fetch.error is not None or result.outcome in RETRY
        self.failures = self.failures + 1 if failed else 0
        return outcome

    def _observe(self) -> None:
        """One snapshot of the managed containers for the status (not for decisions)."""
        try:
            self._observed = self.runtime.observe(self.config.device)
            self._observed_at = _now()
        except FleetgateError as e:
            self._log.warning("status.unobserved", error=str(e))

    # ------------------------------------------------------------------ stages

    def _idle(self, reasons: frozenset[str], source: Refresh, locked: frozenset[str]) -> bool:
        last = self._last
        if reasons or last is None or last.outcome not in STABLE:
            return False
        if self._events_connected is None or not self._events_connected.is_set():
            return False
        return (
            source.checkout is not None
            and last.revision == source.desired
            and last.dirty == source.checkout.dirty
            and last.locked == locked
            and time.monotonic() - last.at < self.config.resync_interval
        )

    def _reconcile(
        self, checkout: Checkout, gate: gates.LockGate, reasons: frozenset[str]
    ) -> PassResult:
        cfg = self.config
        if gate.held:
            self._log.info("lock.held", stacks=sorted(gate.held), reason=gate.reason())
        self._log.info(
            "pass.triggered", reasons=sorted(reasons) or ["timer"], revision=checkout.revision
        )
        with self.store.exclusive():
            return reconcile_once(
                tree=RepoTree(checkout.root),
                revision=checkout.revision,
                device=cfg.device,
                state_dir=cfg.state_dir,
                runtime=self.runtime,
                store=self.store,
                policy=cfg.policy,
                clock=self._clock,
                health_timeout=cfg.health_timeout,
                log=self._log,
                repair_drift=cfg.repair_drift,
                held_stacks=gate.held,
            )


def _sticky(previous: PassResult | None, result: PassResult) -> PassResult:
    """Keep reporting a rollback while the device stays on its last good revision.

    After a rollback every pass toward the same failed revision does nothing and says
    ``failed-no-change``; the status must go on saying *rolled-back*, with the reason,
    until the desired revision changes or something is done again.
    """
    if (
        previous is not None
        and previous.outcome == "rolled-back"
        and result.outcome == "failed-no-change"
        and result.revision == previous.revision
        and result.update is None
        and result.rollback is None
    ):
        return previous
    return result


def _pending(result: PassResult, gate: gates.LockGate, checkout: Checkout) -> PendingUpdate | None:
    """The update that waits (window or application lock), for the status."""
    if result.outcome != "waiting":
        return None
    until = result.next_window
    if until is None and result.held_stacks:
        until = min(gate.held[s] for s in result.held_stacks if s in gate.held)
    return PendingUpdate(checkout.revision or result.revision or "", result.reason, until)


def _gist(status: Status) -> tuple[object, ...]:
    """What a reader of the status file must see at once when it changes."""
    fields = ("outcome", "reason", "stale", "desired_revision", "applied_revision")
    return (*(getattr(status, name) for name in fields), status.pending_update, status.fetch.error)


def _now() -> datetime:
    return datetime.now(UTC)
