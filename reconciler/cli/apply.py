"""`fleetgate apply --device ID [--repo PATH] [--ref REF] [--retry]`: converge this host once.

One reconcile pass (:func:`reconciler.reconcile.run.reconcile_once`): render, plan, apply,
wait for health, roll back to the last good revision when the gate fails. Prints the
steps it ran and the outcome. JSON: :meth:`PassResult.to_json` (stable snake_case
fields, full 40-hex SHAs, RFC 3339 UTC times). Exit 0 when the device converged to the
desired revision, 1 otherwise (rejected, failed, rolled back, held), 2 usage.

``--retry`` applies a revision that failed its health gate before. An update (a new
desired state, not drift repair) waits for the device's update windows; a technician
at the machine overrides that with ``--ignore-windows`` (outcome ``waiting`` else);
so does a stack whose application holds ``updates.lock`` in the state directory (read
as ``plan`` and the agent read it). ``fleetgate plan`` with the same flags shows the
steps this runs.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from reconciler.cli import EXIT_FAILED, EXIT_OK, add_output_flag
from reconciler.cli.output import emit
from reconciler.cli.plan import add_target_flags, observe_locks, open_target
from reconciler.errors import UsageError
from reconciler.units import parse_duration

if TYPE_CHECKING:  # the pass's modules are imported after the arguments are parsed
    from reconciler.reconcile.converge import Convergence
    from reconciler.reconcile.run import PassResult


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "apply",
        help="converge this host once (health gate and rollback included)",
        description="Converge the device to the repository's revision once; roll back on failure.",
    )
    add_target_flags(parser)
    parser.add_argument(
        "--health-timeout",
        default=None,
        help="health gate timeout, e.g. 90s (default: the stacks' healthTimeout)",
    )
    add_output_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    timeout = None
    if args.health_timeout is not None:
        try:
            timeout = parse_duration(args.health_timeout)
        except ValueError as e:
            raise UsageError(f"--health-timeout: {e}") from None
    from reconciler.engine.docker_socket import SocketEngine  # noqa: PLC0415  # lazy: see the imports
    from reconciler.manifests.tree import RepoTree  # noqa: PLC0415
    from reconciler.reconcile.run import reconcile_once  # noqa: PLC0415
    from reconciler.store import StateStore  # noqa: PLC0415

    device, state, checkout = open_target(args)
    store = StateStore(state, device)
    with store.exclusive():
        now = datetime.now(UTC)
        record = store.load()
        held = observe_locks(state, device, record=record, revision=checkout.revision, now=now)
        result = reconcile_once(
            tree=RepoTree(checkout.root),
            revision=checkout.revision,
            device=device,
            state_dir=state,
            runtime=SocketEngine(args.docker_host),
            store=store,
            retry=args.retry,
            health_timeout=timeout,
            ignore_windows=args.ignore_windows,
            held_stacks=held,
            remember=True,
            record=record,
        )
    if args.output == "json":
        emit({**result.to_json(), "dirty": checkout.dirty})
    else:
        for finding in result.findings:
            print(finding, file=sys.stderr)
        emit(_text(result))
    return EXIT_OK if result.converged else EXIT_FAILED


def _text(result: PassResult) -> list[str]:
    where = result.revision or "working tree (not a Git repository)"
    return [
        f"device {result.device} -> {where}",
        *_run_lines("update", result.update),
        *_run_lines(f"rollback to {result.target}", result.rollback),
        f"{result.outcome}: {result.reason}",
    ]


def _run_lines(title: str, run: Convergence | None) -> list[str]:
    if run is None or (not run.done and run.plan is not None and run.plan.is_empty):
        return []
    lines = [f"{title}:"]
    lines += [f"  {step.describe()}" for step in run.done]
    services = () if run.report is None else run.report.services
    lines += [f"  health {s.name}: {s.reason or s.verdict}" for s in services]
    return lines
