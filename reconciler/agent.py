"""The agent: a small loop around the reconcile pass (DESIGN.md §4).

One pass at a time. A pass is: source → lock gate → :func:`reconcile_once` → status.

- **Source**: with a checkout in hand, a cheap ``ls-remote`` ("did the ref move?")
  decides whether to fetch; the first pass, a pass after a source failure and a moved
  ref fetch. A local repository path is re-read every pass (a few local git calls).
  When the source fails, the pass goes on with the last fetched checkout or, after a
  restart without network, with the applied revision from the local mirror: running
  applications are kept (drift repaired) and the status says *source-unreachable*.
- **Idle passes**: when nothing can have changed, :func:`reconcile_once` (render,
  observe, plan) is skipped. "Nothing changed" means: the timer (no other trigger)
  woke the loop, the revision and lock files are as in the last full pass, that pass
  succeeded (or was rejected: the same revision is rejected again), the Docker event
  stream has been connected throughout (a managed container dying, stopping or being
  removed wakes the loop at once) and the last full pass is younger than
  ``resyncInterval``. So drift repair is driven by Docker events, with a full
  observation at least every ``resyncInterval`` as the safety net.
- **Lock gate**: :func:`reconciler.gates.lock_gate` on the ``updates.lock`` files the
  agent sees under ``{state}/locks/{device}/<stack>/``.
- **Backoff**: consecutive source / engine failures stretch the wait exponentially
  (jittered, capped at ``maxBackoff``); a nudge always runs a pass at once.
- **Stop**: :meth:`Agent.request_stop` (SIGTERM / SIGINT) lets the step in flight
  finish, interrupts the pass at its next wait (health gate, dependency wait), writes
  the status and returns. Stopping mid-pass is safe: the next start resumes from the
  stored record (safety rule 7).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import structlog

from reconciler import gates
from reconciler.agentconfig import AgentConfig
from reconciler.errors import FleetgateError, SourceError
from reconciler.model import ObservedState
from reconciler.reconcile import PassResult, reconcile_once
from reconciler.runtime import Runtime
from reconciler.source import Checkout, is_url, open_source, prune_checkouts, redact, remote_head
from reconciler.status import (
    SOURCE_UNREACHABLE,
    FetchState,
    PendingUpdate,
    Status,
    Tally,
    build_status,
)
from reconciler.statushttp import write_status
from reconciler.store import StateStore, parse_rfc3339, rfc3339, write_atomic
from reconciler.tree import RepoTree
from reconciler.triggers import Wakeup, backoff, jittered

_PASS_PARAMS = frozenset(inspect.signature(reconcile_once).parameters)
_NEXT_OPENS = re.compile(r"next opens (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")
STABLE = frozenset(("succeeded", "rejected"))
"""Outcomes after which an idle timer pass may skip reconcile (see the module docstring)."""
QUIET_REFRESH = 30.0
"""Seconds between status file writes while idle passes change nothing but the heartbeat."""
RETRY = frozenset(("failed", "rollback-failed"))
"""Outcomes that count as failures for the backoff."""


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
    (:class:`reconciler.triggers.EngineEventWatch`); without it every pass observes.
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
        self._checkout: Checkout | None = None
        self._source_failed = True  # the first pass fetches
        self._last: _Last | None = None
        self._first_seen: dict[str, datetime] = self._load_first_seen()
        self._record = store.load()
        self._result: PassResult | None = None
        self._observed: ObservedState | None = None
        self._observed_at: datetime | None = None
        self._pending: PendingUpdate | None = None
        self._fetch = FetchState()
        self._tally = Tally()
        self.failures = 0
        self._override: tuple[str, str] | None = None
        self._published_at = -float("inf")
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
        self._log.info("agent.started", repo=redact(self.config.repo), ref=self.config.ref)
        reasons: frozenset[str] = frozenset(("start",))
        while not self._stop.is_set():
            self.run_pass(reasons)
            if once:
                break
            wait = jittered(self.config.poll_interval, self._rng.random())
            if self.failures:
                cap = self.config.max_backoff
                wait = max(wait, backoff(self.failures, wait, cap, self._rng.random()))
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
        except Interrupted:
            why = self._stop_reason or "stop requested"
            self._override = ("interrupted", f"{why}: stopped at a wait; the next start resumes")
        except FleetgateError as e:
            self.failures += 1
            self._override = ("failed", str(e))
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
        try:
            self.publisher.publish(status)
            self._published_at = time.monotonic()
        except (OSError, FleetgateError) as e:
            self._log.warning("status.unpublished", error=str(e))

    def _build(self, now: datetime) -> Status:
        checkout = self._checkout
        status = build_status(
            self._record,
            now=now,
            last_pass=self._result,
            observed=self._observed,
            pending=self._pending,
            fetch=self._fetch,
            desired_revision=None if checkout is None else checkout.revision,
            poll_interval=self.config.poll_interval,
            heartbeat_at=now,
            counters=self._tally,
        )
        if self._fetch.error is not None:  # the pass may have run after the failed fetch
            kept = "" if self.applied is None else f"; running {self.applied} is kept"
            return dataclasses.replace(
                status, outcome=SOURCE_UNREACHABLE, reason=f"{status.fetch.error}{kept}"
            )
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
        checkout = self._refresh(now)
        if checkout is None:
            self.failures += 1
            return None
        locked = self._locked()
        if self._idle(reasons, checkout, locked):
            return None
        pending = self.applied is None or checkout.revision != self.applied
        gate = gates.lock_gate(
            locked,
            self._first_seen,
            now,
            timedelta(seconds=self.config.max_defer),
            update_pending=pending,
        )
        self._keep_first_seen(gate.first_seen)
        for stack in sorted(gate.expired):
            self._log.warning("lock.expired", stack=stack, max_defer=self.config.max_defer)
        result = self._reconcile(checkout, gate, reasons)
        self._result = result
        self._record = self.store.load()
        self._observe()
        self._pending = _pending(result, gate, checkout)
        self._last = _Last(
            checkout.revision, checkout.dirty, locked, result.outcome, time.monotonic()
        )
        if result.outcome == "succeeded" and checkout.revision is not None:
            self._prune(checkout.revision, result)
        failed = self._fetch.error is not None or result.outcome in RETRY
        self.failures = self.failures + 1 if failed else 0
        return result.outcome

    def _observe(self) -> None:
        """One snapshot of the managed containers for the status (not for decisions)."""
        try:
            self._observed = self.runtime.observe(self.config.device)
            self._observed_at = _now()
        except FleetgateError as e:
            self._log.warning("status.unobserved", error=str(e))

    # ------------------------------------------------------------------ stages

    def _refresh(self, now: datetime) -> Checkout | None:
        """The checkout to reconcile; records the fetch state (``None``: nothing usable)."""
        cfg = self.config
        try:
            if self._checkout is None or self._source_failed or not is_url(cfg.repo):
                checkout = open_source(cfg.repo, cfg.cache_dir, cfg.ref, cfg.source_timeout)
            else:
                head = remote_head(cfg.repo, cfg.ref, cfg.source_timeout)
                checkout = self._checkout
                if head != checkout.revision:
                    checkout = open_source(cfg.repo, cfg.cache_dir, head, cfg.source_timeout)
        except SourceError as e:
            self._source_failed = True
            self._fetch = self._fetch.failed(str(e), now)
            self._tally = self._tally.fetch_failed()
            self._log.warning("source.unreachable", error=str(e))
            return self._fallback()
        if self._checkout is None or checkout.revision != self._checkout.revision:
            self._log.info("source.fetched", revision=checkout.revision, dirty=checkout.dirty)
        self._source_failed = False
        self._fetch = self._fetch.fetched(now)
        self._checkout = checkout
        return checkout

    def _fallback(self) -> Checkout | None:
        """The last fetched checkout, else the applied revision from the local mirror."""
        applied = self.applied
        if self._checkout is not None or applied is None:
            return self._checkout
        cfg = self.config
        try:
            self._checkout = open_source(cfg.repo, cfg.cache_dir, applied, cfg.source_timeout)
        except SourceError as e:
            self._log.warning("source.no_local_copy", revision=applied, error=str(e))
        return self._checkout

    def _locked(self) -> frozenset[str]:
        """Stacks whose application holds ``updates.lock`` now (observed)."""
        root = self.config.lock_root
        try:
            return frozenset(
                entry.name for entry in root.iterdir() if (entry / gates.LOCK_FILE).exists()
            )
        except OSError:
            return frozenset()

    def _idle(self, reasons: frozenset[str], checkout: Checkout, locked: frozenset[str]) -> bool:
        last = self._last
        if reasons or last is None or last.outcome not in STABLE:
            return False
        if self._events_connected is None or not self._events_connected.is_set():
            return False
        return (
            last.revision == checkout.revision
            and last.dirty == checkout.dirty
            and last.locked == locked
            and time.monotonic() - last.at < self.config.resync_interval
        )

    def _reconcile(
        self, checkout: Checkout, gate: gates.LockGate, reasons: frozenset[str]
    ) -> PassResult:
        cfg = self.config
        extra: dict[str, Any] = {}
        if "repair_drift" in _PASS_PARAMS:
            extra["repair_drift"] = cfg.repair_drift
        tree = checkout
        hold_reason = ""
        if gate.held:
            self._log.info("lock.held", stacks=sorted(gate.held), reason=gate.reason())
            if "held_stacks" in _PASS_PARAMS:
                extra["held_stacks"] = gate.held_stacks
            elif self.applied is not None:
                # Until the pass holds single stacks: hold the whole update, repair drift
                # of the applied revision only.
                tree = open_source(cfg.repo, cfg.cache_dir, self.applied, cfg.source_timeout)
                hold_reason = gate.reason()
        self._log.info(
            "pass.triggered", reasons=sorted(reasons) or ["timer"], revision=tree.revision
        )
        with self.store.exclusive():
            result = reconcile_once(
                tree=RepoTree(tree.root),
                revision=tree.revision,
                device=cfg.device,
                state_dir=cfg.state_dir,
                runtime=self.runtime,
                store=self.store,
                policy=cfg.policy,
                clock=self._clock,
                health_timeout=cfg.health_timeout,
                log=self._log,
                **extra,
            )
        if hold_reason and result.outcome in STABLE:
            return dataclasses.replace(
                result, outcome="deferred", reason=hold_reason, revision=checkout.revision
            )
        return result

    def _prune(self, revision: str, result: PassResult) -> None:
        keep = {revision, *(r for r in (result.applied_revision, result.last_good_revision) if r)}
        removed = prune_checkouts(self.config.cache_dir, keep)
        if removed:
            self._log.info("source.pruned", checkouts=len(removed))

    # -------------------------------------------------------- lock clocks on disk

    def _load_first_seen(self) -> dict[str, datetime]:
        path = self.config.device_dir / "locks.json"
        try:
            data = json.loads(path.read_bytes())
            return {str(k): parse_rfc3339(str(v)) for k, v in dict(data).items()}
        except (OSError, ValueError, TypeError):
            return {}

    def _keep_first_seen(self, clocks: Mapping[str, datetime]) -> None:
        """Persist the deferral clocks so a restart does not grant a lock more time."""
        if dict(clocks) == self._first_seen:
            return
        self._first_seen = dict(clocks)
        data = {stack: rfc3339(at) for stack, at in sorted(clocks.items())}
        write_atomic(self.config.device_dir / "locks.json", json.dumps(data).encode())


def _pending(result: PassResult, gate: gates.LockGate, checkout: Checkout) -> PendingUpdate | None:
    """The update that waits (window or application lock), for the status."""
    if result.outcome != "deferred":
        return None
    revision = checkout.revision or result.revision or ""
    opens = _NEXT_OPENS.search(result.reason)
    if gate.held and not opens:
        until = min(gate.held.values())
        return PendingUpdate(revision, gate.reason(), until)
    return PendingUpdate(revision, result.reason, parse_rfc3339(opens.group(1)) if opens else None)


def _gist(status: Status) -> tuple[object, ...]:
    """What a reader of the status file must see at once when it changes."""
    return (
        status.outcome,
        status.reason,
        status.stale,
        status.fetch.error,
        status.desired_revision,
        status.applied_revision,
        status.pending_update,
    )


def _now() -> datetime:
    return datetime.now(UTC)
