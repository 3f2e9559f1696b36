"""The promotion gate of a rollout wave (pure): may wave N move to the revision wave N-1 proved?

:func:`gate` is a function of the previous wave's evidence (each device's latest status
document and presence), the waves, the candidate revision and ``now``; it returns a
:class:`Verdict` with one reason line per unmet condition, naming devices (DESIGN.md §6).

Definitions (the contract left them open):

- **bad**: a device of the previous wave that never reported (*silent*), is *offline*
  (its broker presence is ``false``, or its last report is older than ``stale_after``),
  whose last pass *failed* (``failed``, ``failed-no-change``, ``rollback-failed``,
  ``rejected``), that *rolled back*, or that lists the candidate among its
  ``failed_revisions``. At most ``maxFailed`` bad devices are tolerated.
- **proved**: every other device reports ``applied_revision`` and ``last_good_revision``
  equal to the candidate (or to an ancestor that renders the same desired state for that
  device: :attr:`Evidence.equivalent`, checked by the caller with Git and ``impact``,
  because an agent records nothing new for a commit that changes nothing on it, such as
  the promotion commit itself) with outcome ``succeeded``, and has run it for at least
  ``soak``. *Since* is the status field ``last_good_at`` — when the candidate passed the
  device's health gate (a later "already converged" pass does not move it; a repair that
  passes the gate again does, so the soak restarts after trouble). The soak is measured
  from *since* to the device's own latest word (``heartbeat_at``, else
  ``pass_finished_at``), never to ``now``: an old report proves only what it says, which is
  also right for status files brought back on a stick. A report without ``last_good_at``
  (an older agent) proves no soak.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from reconciler.manifests.waves import Rollout
from reconciler.model import parse_rfc3339
from reconciler.units import format_duration

FAILED_OUTCOMES = frozenset({"failed", "failed-no-change", "rollback-failed", "rejected"})

DeviceState = Literal["proved", "soaking", "behind", "failed", "rolled-back", "offline", "silent"]
BAD_STATES = frozenset({"failed", "rolled-back", "offline", "silent"})


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one device of the previous wave said last: its status document and presence."""

    device: str
    status: Mapping[str, Any] | None = None
    online: bool | None = None  # None: unknown (status files carry no presence)
    equivalent: bool = False
    """The caller checked that the device's applied revision is an ancestor of the candidate
    whose desired state *for this device* equals the candidate's (a later commit changed
    only other devices, or is a promotion): running it proves the candidate here."""


@dataclass(frozen=True, slots=True)
class DeviceVerdict:
    """One row of the evidence table."""

    device: str
    state: DeviceState
    applied: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    soaked: float = 0.0  # seconds the candidate ran healthy, as far as reports prove
    detail: str = ""

    @property
    def bad(self) -> bool:
        return self.state in BAD_STATES


@dataclass(frozen=True, slots=True)
class Verdict:
    """The gate's answer for promoting ``wave`` to ``candidate``."""

    wave: str
    previous: str
    candidate: str | None
    soak: float
    max_failed: int
    devices: tuple[DeviceVerdict, ...]
    reasons: tuple[str, ...]

    @property
    def met(self) -> bool:
        return not self.reasons


def _time(status: Mapping[str, Any], key: str) -> datetime | None:
    value = status.get(key)
    if not isinstance(value, str):
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def _str(status: Mapping[str, Any], key: str) -> str | None:
    value = status.get(key)
    return value if isinstance(value, str) else None


def short(sha: str | None) -> str:
    return "nothing" if not sha else sha[:12]


def judge(
    evidence: Evidence, candidate: str, soak: float, now: datetime, stale_after: float | None
) -> DeviceVerdict:
    """One device of the previous wave against the candidate (see the module's definitions)."""
    status = evidence.status
    if status is None:
        return DeviceVerdict(evidence.device, "silent", detail="never reported")
    applied, outcome = _str(status, "applied_revision"), _str(status, "outcome")
    row = DeviceVerdict(evidence.device, "silent", applied, outcome)
    said = _time(status, "heartbeat_at") or _time(status, "pass_finished_at")
    if evidence.online is False:
        return _with(row, "offline", "offline (broker presence false)")
    if stale_after is not None and (said is None or now - said > timedelta(seconds=stale_after)):
        return _with(row, "offline", f"no report for more than {format_duration(stale_after)}")
    failed_revs = status.get("failed_revisions")
    failed_candidate = isinstance(failed_revs, list) and any(
        isinstance(f, Mapping) and f.get("revision") == candidate for f in failed_revs
    )
    reason = (_str(status, "reason") or "")[:120]
    if outcome == "rolled-back":
        return _with(row, "rolled-back", f"rolled back: {reason}".rstrip(": "))
    if outcome in FAILED_OUTCOMES:
        return _with(row, "failed", f"{outcome}: {reason}".rstrip(": "))
    if failed_candidate:
        return _with(row, "failed", f"{short(candidate)} failed its health gate here")
    on_candidate = applied == candidate or (evidence.equivalent and applied is not None)
    if not on_candidate or _str(status, "last_good_revision") != applied:
        return _with(row, "behind", f"runs {short(applied)}, not {short(candidate)}")
    if outcome != "succeeded":
        return _with(row, "behind", f"last pass {outcome or 'unknown'}, not succeeded")
    since = _time(status, "last_good_at")
    if since is None or said is None:
        return _with(row, "soaking", "reports no last_good_at; the soak cannot be proved")
    soaked = max(0.0, (said - since).total_seconds())
    row = DeviceVerdict(evidence.device, "proved", applied, outcome, since, soaked)
    if soaked < soak:
        left = format_duration(max(1, round(soak - soaked)))
        text = f"ran {short(candidate)} for {format_duration(round(soaked))}, {left} of soak left"
        return _with(row, "soaking", text)
    return row


def _with(row: DeviceVerdict, state: DeviceState, detail: str) -> DeviceVerdict:
    return DeviceVerdict(row.device, state, row.applied, row.outcome, row.since, row.soaked, detail)


def _names(rows: Sequence[DeviceVerdict]) -> str:
    return ", ".join(f"{r.device} ({r.detail})" for r in rows)


def gate(
    *,
    wave: str,
    previous: str,
    candidate: str | None,
    soak: float,
    max_failed: int,
    evidence: Sequence[Evidence],
    now: datetime,
    stale_after: float | None = None,
) -> Verdict:
    """May ``wave`` move to ``candidate``, given the previous wave's ``evidence``?

    ``candidate`` is ``None`` when the previous wave has not started (no pin): never met.
    ``soak`` and ``max_failed`` are the *promoted* wave's settings (they guard its entry).
    """
    reasons: list[str] = []
    if candidate is None:
        reasons.append(
            f"wave {previous} has not started (no waves/{previous}.yaml); promote it first"
        )
        return Verdict(wave, previous, None, soak, max_failed, (), tuple(reasons))
    rows = tuple(
        judge(e, candidate, soak, now, stale_after)
        for e in sorted(evidence, key=lambda e: e.device)
    )
    if not rows:
        reasons.append(f"wave {previous} has no devices; nothing proves {short(candidate)}")
    bad = [r for r in rows if r.bad]
    if len(bad) > max_failed:
        reasons.append(
            f"{len(bad)} of {len(rows)} devices of wave {previous} are failed, rolled back, "
            f"offline or silent (maxFailed {max_failed}): {_names(bad)}"
        )
    for row in rows:
        if row.state == "behind":
            reasons.append(f"device {row.device} has not applied {short(candidate)}: {row.detail}")
        elif row.state == "soaking":
            reasons.append(
                f"device {row.device} has not soaked {format_duration(soak)}: {row.detail}"
            )
    return Verdict(wave, previous, candidate, soak, max_failed, rows, tuple(reasons))


def wave_gate(
    rollout: Rollout,
    position: int,
    candidate: str | None,
    evidence: Sequence[Evidence],
    now: datetime,
    *,
    stale_after: float | None = None,
) -> Verdict:
    """:func:`gate` of the wave at ``position`` (not the first), with its soak and maxFailed
    from ``rollout`` and the wave before it as the one whose ``evidence`` counts."""
    wave = rollout.waves[position]
    return gate(
        wave=wave.name,
        previous=rollout.waves[position - 1].name,
        candidate=candidate,
        soak=wave.soak,
        max_failed=wave.max_failed,
        evidence=evidence,
        now=now,
        stale_after=stale_after,
    )
