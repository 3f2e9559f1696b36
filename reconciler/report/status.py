"""What a device reports about itself (pure): the :class:`Status` value and its JSON contract.

:func:`build_status` gathers the device record, the last pass, an observed snapshot,
the pending update and the source's fetch state into one immutable value; the agent
publishes it as ``{stateDir}/devices/{device}/status.json``, on ``GET /status`` and as
``/metrics`` (:mod:`reconciler.report.http`), and ``fleetgate status`` prints it.

Stable JSON contract (``Status.to_json``; snake_case, full 40-hex SHAs — or
``worktree:<hex>`` outside Git —, RFC 3339 UTC times, ``null`` when unknown)::

    device                    the device id
    desired_revision          what the repository asks for (last fetched / attempted)
    applied_revision          what was last applied to the engine
    last_good_revision        the last revision that passed its health gate
    last_good_at              when it passed (a later no-change pass does not move it; the
                              soak of a rollout wave is measured from here, DESIGN.md §6)
    failed_revisions          [{revision, reason, at}] not retried until the desired one changes
    outcome                   succeeded | failed-no-change | rolled-back | rollback-failed |
                              rejected | failed | waiting | source-unreachable | null
    reason                    one line: why the last pass ended as it did
    stage                     the pipeline stage the pass ended in (null: went through)
    pass_started_at, pass_finished_at
    services                  [{stack, service, container, image, image_digest, state,
                                health, restart_count, config_hash}] (digest: a repo digest
                                ``repo@sha256:...`` of the running image, "" if none)
    observed_at               when ``services`` was observed (null: never)
    pending_update            {revision, reason, next_window} or null: an update that waits
                              for a window (next_window: when it opens) or an app lock
    last_fetch_at             the last fetch attempt; last_successful_fetch_at: last success
    last_fetch_error          the last attempt's error (redacted) or null
    stale                     true when no fetch succeeded for STALE_AFTER poll intervals
    agent_version, poll_interval_seconds, heartbeat_at (the agent loop's last tick)
    counters                  {passes: {outcome: n}, fetch_errors, pass_seconds_total,
                               last_pass_seconds} since the agent started
    warnings                  ["<code>: <one line>"] what the agent says loudly about its own
                              configuration ([] when nothing); code today:
                              unsigned-and-unrestricted (DESIGN.md §2 rule 8)

Secret values never appear: environment values are not part of the status at all, free
text (reasons, errors) has URL credentials redacted and the values of secret-looking
variables (the rule of :mod:`reconciler.redaction`) replaced by ``***``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import __version__
from reconciler.model import (
    DesiredState,
    ObservedState,
    parse_rfc3339,
    rfc3339,
)
from reconciler.record import DeviceRecord
from reconciler.redaction import redact, redact_urls
from reconciler.redaction import secret_values as named_secret_values
from reconciler.report.services import ServiceStatus, services_of
from reconciler.stages import Stage, stage_from_json

if TYPE_CHECKING:  # the pass module pulls in the whole pipeline; status only reads results
    from reconciler.reconcile.run import PassResult

STALE_AFTER = 3
"""Poll intervals without a successful fetch after which the status is ``stale``."""

SOURCE_UNREACHABLE = "source-unreachable"


def status_path(state_dir: Path | str, device: str) -> Path:
    """Where the agent publishes ``device``'s status: ``{state}/devices/{device}/status.json``."""
    return Path(state_dir) / "devices" / device / "status.json"


# --------------------------------------------------------------------------- parts


@dataclass(frozen=True, slots=True)
class FailedEntry:
    revision: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PendingUpdate:
    """An update that waits: for ``next_window`` (closed windows) or an application lock."""

    revision: str
    reason: str
    next_window: datetime | None = None


@dataclass(frozen=True, slots=True)
class FetchState:
    """The source's last fetch attempt and last success (pure transitions take ``now``)."""

    attempted_at: datetime | None = None
    succeeded_at: datetime | None = None
    error: str | None = None

    def fetched(self, now: datetime) -> FetchState:
        return FetchState(attempted_at=now, succeeded_at=now, error=None)

    def failed(self, error: str, now: datetime) -> FetchState:
        error = redact_urls(error)
        return FetchState(attempted_at=now, succeeded_at=self.succeeded_at, error=error)

    def stale(self, now: datetime, poll_interval: float) -> bool:
        """No success within ``STALE_AFTER`` poll intervals (or only failures so far)."""
        if self.succeeded_at is None:
            return self.error is not None
        return now - self.succeeded_at > timedelta(seconds=STALE_AFTER * poll_interval)


@dataclass(frozen=True, slots=True)
class Tally:
    """Counters since the agent started (the Prometheus counters are read from here)."""

    passes: tuple[tuple[str, int], ...] = ()  # (outcome, count), sorted by outcome
    fetch_errors: int = 0
    pass_seconds_total: float = 0.0
    last_pass_seconds: float | None = None

    @property
    def passes_total(self) -> int:
        return sum(n for _, n in self.passes)

    def counted(self, outcome: str, seconds: float) -> Tally:
        counts = dict(self.passes)
        counts[outcome] = counts.get(outcome, 0) + 1
        return dataclasses.replace(
            self,
            passes=tuple(sorted(counts.items())),
            pass_seconds_total=self.pass_seconds_total + seconds,
            last_pass_seconds=seconds,
        )

    def fetch_failed(self) -> Tally:
        return dataclasses.replace(self, fetch_errors=self.fetch_errors + 1)


# -------------------------------------------------------------------------- status


@dataclass(frozen=True, slots=True)
class Status:
    """Everything ``/status``, ``status.json``, ``/metrics`` and ``fleetgate status`` show."""

    device: str
    desired_revision: str | None = None
    applied_revision: str | None = None
    last_good_revision: str | None = None
    failed_revisions: tuple[FailedEntry, ...] = ()
    outcome: str | None = None
    reason: str = ""
    last_good_at: datetime | None = None
    stage: Stage | None = None
    pass_started_at: datetime | None = None
    pass_finished_at: datetime | None = None
    services: tuple[ServiceStatus, ...] = ()
    observed_at: datetime | None = None
    pending_update: PendingUpdate | None = None
    fetch: FetchState = FetchState()
    stale: bool = False
    agent_version: str = __version__
    poll_interval: float = 60.0
    heartbeat_at: datetime | None = None
    counters: Tally = Tally()
    warnings: tuple[str, ...] = ()

    def alive(self, now: datetime, limit: float) -> bool:
        """The agent loop ticked within ``limit`` seconds of ``now``."""
        return self.heartbeat_at is not None and now - self.heartbeat_at <= timedelta(seconds=limit)

    def with_services(self, observed: ObservedState, now: datetime) -> Status:
        """The same status with services from a fresher snapshot (``fleetgate status`` live)."""
        return dataclasses.replace(self, services=services_of(observed), observed_at=now)

    def to_json(self) -> dict[str, Any]:
        pending = self.pending_update
        return {
            "device": self.device,
            "desired_revision": self.desired_revision,
            "applied_revision": self.applied_revision,
            "last_good_revision": self.last_good_revision,
            "last_good_at": _time(self.last_good_at),
            "failed_revisions": [
                {"revision": f.revision, "reason": f.reason, "at": rfc3339(f.at)}
                for f in self.failed_revisions
            ],
            "outcome": self.outcome,
            "reason": self.reason,
            "stage": None if self.stage is None else self.stage.value,
            "pass_started_at": _time(self.pass_started_at),
            "pass_finished_at": _time(self.pass_finished_at),
            "services": [dataclasses.asdict(s) for s in self.services],
            "observed_at": _time(self.observed_at),
            "pending_update": None
            if pending is None
            else {
                "revision": pending.revision,
                "reason": pending.reason,
                "next_window": _time(pending.next_window),
            },
            "last_fetch_at": _time(self.fetch.attempted_at),
            "last_successful_fetch_at": _time(self.fetch.succeeded_at),
            "last_fetch_error": self.fetch.error,
            "stale": self.stale,
            "agent_version": self.agent_version,
            "poll_interval_seconds": self.poll_interval,
            "heartbeat_at": _time(self.heartbeat_at),
            "counters": {
                "passes": dict(self.counters.passes),
                "fetch_errors": self.counters.fetch_errors,
                "pass_seconds_total": self.counters.pass_seconds_total,
                "last_pass_seconds": self.counters.last_pass_seconds,
            },
            "warnings": list(self.warnings),
        }


def status_from_json(data: Mapping[str, Any]) -> Status:
    """The :class:`Status` of :meth:`Status.to_json` output; raises ``ValueError`` on bad data."""
    try:
        pending = data.get("pending_update")
        counters = data.get("counters") or {}
        return Status(
            device=str(data["device"]),
            desired_revision=data.get("desired_revision"),
            applied_revision=data.get("applied_revision"),
            last_good_revision=data.get("last_good_revision"),
            last_good_at=_parse(data.get("last_good_at")),
            failed_revisions=tuple(
                FailedEntry(str(f["revision"]), str(f["reason"]), parse_rfc3339(f["at"]))
                for f in data.get("failed_revisions") or ()
            ),
            outcome=data.get("outcome"),
            reason=str(data.get("reason") or ""),
            stage=stage_from_json(data.get("stage")),
            pass_started_at=_parse(data.get("pass_started_at")),
            pass_finished_at=_parse(data.get("pass_finished_at")),
            services=tuple(ServiceStatus(**s) for s in data.get("services") or ()),
            observed_at=_parse(data.get("observed_at")),
            pending_update=None
            if not pending
            else PendingUpdate(
                str(pending["revision"]),
                str(pending["reason"]),
                _parse(pending.get("next_window")),
            ),
            fetch=FetchState(
                _parse(data.get("last_fetch_at")),
                _parse(data.get("last_successful_fetch_at")),
                data.get("last_fetch_error"),
            ),
            stale=bool(data.get("stale")),
            agent_version=str(data.get("agent_version") or ""),
            poll_interval=float(data.get("poll_interval_seconds") or 60.0),
            heartbeat_at=_parse(data.get("heartbeat_at")),
            counters=Tally(
                passes=tuple(
                    sorted((str(k), int(v)) for k, v in counters.get("passes", {}).items())
                ),
                fetch_errors=int(counters.get("fetch_errors") or 0),
                pass_seconds_total=float(counters.get("pass_seconds_total") or 0.0),
                last_pass_seconds=counters.get("last_pass_seconds"),
            ),
            warnings=tuple(str(w) for w in data.get("warnings") or ()),
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"status does not match its schema: {e}") from e


# --------------------------------------------------------------------------- build


def build_status(
    record: DeviceRecord,
    *,
    now: datetime,
    last_pass: PassResult | None = None,
    observed: ObservedState | None = None,
    pending: PendingUpdate | None = None,
    fetch: FetchState = FetchState(),
    desired_revision: str | None = None,
    poll_interval: float = 60.0,
    heartbeat_at: datetime | None = None,
    counters: Tally = Tally(),
    secrets: Iterable[str] = (),
) -> Status:
    """The status of ``record`` and what came with it, as of ``now`` (pure).

    ``last_pass`` is the last :class:`reconciler.reconcile.run.PassResult` (``None``: the
    outcome stored in ``record``). A fetch that failed after the last pass finished
    makes the outcome ``source-unreachable``. ``secrets`` are extra values to scrub from
    free text; the secret-looking environment values of the record's last good state
    are always scrubbed.
    """
    hidden = frozenset(secrets) | secret_values(record.last_good_state)
    outcome: str | None = record.last_outcome
    stage: Stage | None = None
    reason, started, finished = record.last_reason, None, record.last_pass_at
    if last_pass is not None:
        outcome, reason, stage = last_pass.outcome, last_pass.reason, last_pass.stage
        started, finished = last_pass.started_at, last_pass.finished_at
    tried = fetch.attempted_at
    if fetch.error is not None and tried is not None and (finished is None or tried >= finished):
        outcome, reason, stage = SOURCE_UNREACHABLE, fetch.error, Stage.SOURCE
    desired = desired_revision
    if desired is None and last_pass is not None:
        desired = last_pass.revision
    if desired is None and record.last_attempted is not None:
        desired = record.last_attempted.revision
    return Status(
        device=record.device,
        desired_revision=desired,
        applied_revision=None if record.last_applied is None else record.last_applied.revision,
        last_good_revision=None if record.last_good is None else record.last_good.revision,
        last_good_at=None if record.last_good is None else record.last_good.at,
        failed_revisions=tuple(
            FailedEntry(f.revision, scrub(f.reason, hidden), f.at) for f in record.failed
        ),
        outcome=outcome,
        reason=scrub(reason, hidden),
        stage=stage,
        pass_started_at=started,
        pass_finished_at=finished,
        services=() if observed is None else services_of(observed),
        observed_at=None if observed is None else now,
        pending_update=None
        if pending is None
        else dataclasses.replace(pending, reason=scrub(pending.reason, hidden)),
        fetch=dataclasses.replace(
            fetch, error=None if fetch.error is None else scrub(fetch.error, hidden)
        ),
        stale=fetch.stale(now, poll_interval),
        poll_interval=poll_interval,
        heartbeat_at=heartbeat_at,
        counters=counters,
    )


def secret_values(state: DesiredState | None) -> frozenset[str]:
    """Values of the secret-named variables of ``state`` (:mod:`reconciler.redaction`)."""
    if state is None:
        return frozenset()
    return named_secret_values(pair for spec in state.services for pair in spec.environment)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with URL credentials and every value in ``secrets`` replaced by ``***``."""
    return redact(text, secrets)


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def _parse(text: Any) -> datetime | None:
    return None if text in (None, "") else parse_rfc3339(str(text))
