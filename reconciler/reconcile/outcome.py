"""How one reconcile pass ended: the outcome, its one-line reason and the stage it stopped in.

Outcomes (``PassResult.outcome``):

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
- ``waiting``: the update waits for an update window (``next_window``) or for
  applications that hold their update lock (``held_stacks``); images are pulled ahead,
  stacks nobody holds are updated when the windows are open, and the revision is not
  recorded as applied yet. Drift repair waits too when ``repair_drift`` is off and the
  windows are closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from reconciler.errors import Finding, NextStep
from reconciler.model import rfc3339
from reconciler.reconcile.converge import Convergence, ConvergeStage
from reconciler.stages import Stage

Outcome = Literal[
    "succeeded",
    "failed-no-change",
    "rolled-back",
    "rollback-failed",
    "rejected",
    "failed",
    "waiting",
]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
"""Every outcome, in declaration order (metrics export one series per outcome)."""

STOPPED_AT: Mapping[ConvergeStage, tuple[Stage, Outcome]] = {
    "gate": (Stage.GATE, "waiting"),  # a closed window: pulled ahead, nothing changed
    "plan": (Stage.PLAN, "failed-no-change"),  # the plan is blocked
    "pull": (Stage.APPLY, "failed-no-change"),  # download-then-kill: nothing was stopped
    "apply": (Stage.APPLY, "failed"),  # the engine failed mid-way
}
"""Where an update convergence that stopped early leaves the pass: (stage, outcome)."""

AFTERWARDS: Mapping[Outcome, NextStep | None] = {
    "succeeded": None,
    "waiting": None,  # the next window or released lock moves it on
    "rejected": "stall",  # until a new revision
    "failed-no-change": "stall",  # a failed revision is not retried until it changes
    "rolled-back": "stall",
    "failed": "retry",
    "rollback-failed": "retry",
}
"""What the agent does after each outcome: back off and retry, stall, or nothing."""
STABLE: frozenset[Outcome] = frozenset(("succeeded", "rejected"))
"""Outcomes after which an idle timer pass may skip reconcile (see the agent loop)."""
RETRY: frozenset[Outcome] = frozenset(o for o, step in AFTERWARDS.items() if step == "retry")
"""Outcomes that count as failures for the agent's backoff."""


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass did. ``to_json`` has stable snake_case fields and RFC 3339 UTC times.

    ``next_window`` (aware UTC) is when the next update window opens, set while the
    pass waits for one; ``held_stacks`` names the stacks whose update waits for their
    application's ``updates.lock`` (sorted).
    """

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
    next_window: datetime | None = None
    held_stacks: tuple[str, ...] = ()

    @property
    def converged(self) -> bool:
        return self.outcome == "succeeded"

    def to_json(self) -> dict[str, object]:
        return {
            "device": self.device,
            "outcome": self.outcome,
            "reason": self.reason,
            "stage": None if self.stage is None else self.stage.value,
            "revision": self.revision,
            "target": self.target,
            "update": None if self.update is None else self.update.to_json(),
            "rollback": None if self.rollback is None else self.rollback.to_json(),
            "findings": [f.to_json() for f in self.findings],
            "applied_revision": self.applied_revision,
            "last_good_revision": self.last_good_revision,
            "started_at": _time(self.started_at),
            "finished_at": _time(self.finished_at),
            "next_window": _time(self.next_window),
            "held_stacks": list(self.held_stacks),
        }


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def unwritable_record(error: OSError) -> str:
    """One line for a device record that cannot be written (a full or read-only disk)."""
    return (
        f"cannot write the device record under the state directory: "
        f"{error.strerror or error}; free space there, the next pass retries"
    )


def join_reasons(*parts: str | None) -> str:
    """The non-empty parts of a reason, joined with '; '."""
    return "; ".join(p for p in parts if p)
