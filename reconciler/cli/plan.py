"""`fleetgate plan --device ID [--repo PATH] [--ref REF]`: the steps that would run here.

Renders the device's desired state, observes the gates exactly as ``apply`` does
(update windows from the manifests, ``updates.lock`` files and their deferral clocks
from the state directory, the device record, the clock, ``--ignore-windows`` and
``--retry``), makes the same decision (:func:`reconciler.decide.passplan.decide`) and the same
steps (:func:`reconciler.reconcile.converge.steps_toward`), and prints exactly the steps
``apply`` would run, then what waits and why. Nothing is changed. JSON (stable
fields): ``{"device", "revision", "dirty", "pass": {"kind", "revision", "target",
"held_stacks", "waits": [...]}, "steps": [...], "waiting_steps": [...], "blocked": [...],
"notes": [...]}`` with each step's ``to_json()``. Exit 0; 1 when the repository is
invalid for this device; 2 usage.

The flags shared with ``apply`` (``--device``, ``--repo``, ``--ref``, ``--state-dir``,
``--docker-host``, ``--retry``, ``--ignore-windows``) and the observation of the gates
are defined here once.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.cli import (
    EXIT_OK,
    add_output_flag,
    add_repo_flags,
    add_state_dir_flag,
    state_dir_of,
)
from reconciler.cli.output import emit
from reconciler.errors import UsageError

if TYPE_CHECKING:  # imported where used: `apply` and `plan` load only what their path needs
    from reconciler.decide.passplan import PassPlan
    from reconciler.reconcile.converge import PassSteps
    from reconciler.record import DeviceRecord
    from reconciler.source import Checkout

_DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def add_target_flags(parser: argparse.ArgumentParser) -> None:
    """``--device --repo --ref --state-dir --docker-host``, shared by plan and apply."""
    parser.add_argument("--device", required=True, help="device id (devices/<id>.yaml)")
    add_repo_flags(parser)
    add_state_dir_flag(parser)
    parser.add_argument("--docker-host", default=None, help="engine URL (default: DOCKER_HOST)")
    parser.add_argument(
        "--retry", action="store_true", help="apply a revision that failed its health gate before"
    )
    parser.add_argument(
        "--ignore-windows", action="store_true", help="update outside the device's update windows"
    )


def open_target(args: argparse.Namespace) -> tuple[str, Path, Checkout]:
    """Validate the device id and fetch the repository: (device, state dir, checkout)."""
    device: str = args.device
    if not _DEVICE_ID.match(device):
        raise UsageError(f"--device {device!r}: a device id is [a-z0-9][a-z0-9-]{{0,62}}")
    state = state_dir_of(args)
    from reconciler.source.fetch import open_source  # noqa: PLC0415  # lazy: see the imports

    checkout = open_source(
        args.repo, state / "cache", ref=args.ref, allowed_signers=args.allowed_signers
    )
    return device, state, checkout


def observe_locks(
    state: Path, device: str, *, record: DeviceRecord, revision: str | None, now: datetime
) -> Mapping[str, datetime]:
    """The stacks whose ``updates.lock`` holds an update now, each with its deferral end.

    Read as the agent reads them (:mod:`reconciler.lockfiles`: the lock files and the
    agent's deferral clocks, never written here, so ``plan`` and ``apply`` never give a
    lock more time), then :func:`reconciler.decide.gates.lock_gate` with the default
    ``maxDefer``.
    """
    from reconciler.decide.gates import DEFAULT_MAX_DEFER, lock_gate  # noqa: PLC0415
    from reconciler.lockfiles import clocks_path, load_clocks, lock_root, locked_stacks  # noqa: PLC0415

    locked = locked_stacks(lock_root(state, device))
    clocks = load_clocks(clocks_path(state, device))
    applied = record.last_applied
    pending = applied is None or revision is None or applied.revision != revision
    max_defer = timedelta(seconds=DEFAULT_MAX_DEFER)
    gate = lock_gate(locked, clocks, now, max_defer, update_pending=pending)
    return gate.held


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="show the steps that would run on this host",
        description="Diff the device's desired state against this engine; change nothing.",
    )
    add_target_flags(parser)
    add_output_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.decide.passplan import Gates, decide  # noqa: PLC0415  # lazy: see the imports
    from reconciler.engine.docker_socket import SocketEngine  # noqa: PLC0415
    from reconciler.manifests.tree import RepoTree  # noqa: PLC0415
    from reconciler.reconcile.converge import observe_host, steps_toward  # noqa: PLC0415
    from reconciler.render.desired import build_desired  # noqa: PLC0415
    from reconciler.store import StateStore  # noqa: PLC0415

    device, state, checkout = open_target(args)
    desired = build_desired(RepoTree(checkout.root), checkout.revision, device, str(state))
    record = StateStore(state, device).load()
    now = datetime.now(UTC)
    held = observe_locks(state, device, record=record, revision=checkout.revision, now=now)
    gates = Gates(held, ignore_windows=args.ignore_windows, retry=args.retry)
    decided = decide(record, desired, gates, now)
    steps = None
    if decided.target is not None:
        host = observe_host(SocketEngine(args.docker_host), decided.target)
        steps = steps_toward(
            decided.target,
            host,
            ahead=decided.ahead,
            gated=decided.window is not None,
            untouched=frozenset(decided.held_stacks),
        )
    if args.output == "json":
        emit(_document(device, checkout, decided, steps))
        return EXIT_OK
    emit(_text(device, checkout, decided, steps))
    return EXIT_OK


def _document(
    device: str, checkout: Checkout, decided: PassPlan, steps: PassSteps | None
) -> dict[str, object]:
    return {
        "device": device,
        "revision": checkout.revision,
        "dirty": checkout.dirty,
        "pass": decided.to_json(),
        "steps": [] if steps is None else [s.to_json() for s in steps.to_run],
        "waiting_steps": [] if steps is None else [s.to_json() for s in steps.waiting],
        "blocked": [] if steps is None else list(steps.plan.blocked),
        "notes": [] if steps is None else list(_notes(steps)),
    }


def _notes(steps: PassSteps) -> tuple[str, ...]:
    return (*steps.early.notes, *steps.plan.notes)


_HEADLINE = {
    "update": "update to {target}",
    "repair": "repair toward the applied revision {target}",
    "rollback": "stay on / return to the last good revision {target}",
    "hold": "hold: nothing is changed",
}


def _text(device: str, checkout: Checkout, decided: PassPlan, steps: PassSteps | None) -> list[str]:
    where = checkout.revision or "working tree (not a Git repository)"
    lines = [
        f"device {device} at {where}{' (uncommitted changes)' if checkout.dirty else ''}",
        f"pass: {_HEADLINE[decided.kind].format(target=decided.target_revision)}",
    ]
    run = () if steps is None else steps.to_run
    lines += [f"{number:3}. {step.describe()}" for number, step in enumerate(run, start=1)]
    blocked = () if steps is None else steps.plan.blocked
    waiting = () if steps is None else steps.waiting
    if not run and not blocked:
        quiet = waiting or decided.waits
        lines.append(
            "nothing runs now"
            if quiet
            else "nothing to do: this host already runs the desired state"
        )
    lines += [f"blocked: {reason}" for reason in blocked]
    lines += [f"waits: {line}" for line in decided.describe()]
    if waiting:
        lines.append(f"waiting: {len(waiting)} step(s) run when the update window opens")
    lines += [f"note: {note}" for note in (() if steps is None else _notes(steps))]
    return lines
