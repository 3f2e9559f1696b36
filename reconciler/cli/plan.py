"""`fleetgate plan --device ID [--repo PATH] [--ref REF]`: the steps that would run here.

Renders the device's desired state from the repository, observes the local engine and
prints the ordered steps with their reasons, what is blocked, and notes. Nothing is
changed. JSON (stable fields): ``{"device", "revision", "dirty", "steps": [...],
"blocked": [...], "notes": [...]}`` with each step's ``to_json()``. Exit 0; 1 when the
repository is invalid for this device; 2 usage.

The flags shared with ``apply`` (``--device``, ``--repo``, ``--ref``, ``--state-dir``,
``--docker-host``) are defined here once.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from reconciler.cli import (
    EXIT_OK,
    add_output_flag,
    add_repo_flags,
    add_state_dir_flag,
    state_dir_of,
)
from reconciler.convergence import existing_paths
from reconciler.engine import DockerEngine
from reconciler.errors import UsageError
from reconciler.plan import plan
from reconciler.reconcile import build_desired
from reconciler.rollout import decide
from reconciler.source import Checkout, open_source
from reconciler.store import StateStore
from reconciler.tree import RepoTree

_DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def add_target_flags(parser: argparse.ArgumentParser) -> None:
    """``--device --repo --ref --state-dir --docker-host``, shared by plan and apply."""
    parser.add_argument("--device", required=True, help="device id (devices/<id>.yaml)")
    add_repo_flags(parser)
    add_state_dir_flag(parser)
    parser.add_argument("--docker-host", default=None, help="engine URL (default: DOCKER_HOST)")


def open_target(args: argparse.Namespace) -> tuple[str, Path, Checkout]:
    """Validate the device id and fetch the repository: (device, state dir, checkout)."""
    device: str = args.device
    if not _DEVICE_ID.match(device):
        raise UsageError(f"--device {device!r}: a device id is [a-z0-9][a-z0-9-]{{0,62}}")
    state = state_dir_of(args)
    checkout = open_source(
        args.repo, state / "cache", ref=args.ref, allowed_signers=args.allowed_signers
    )
    return device, state, checkout


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
    device, state, checkout = open_target(args)
    desired = build_desired(RepoTree(checkout.root), checkout.revision, device, str(state))
    target = decide(StateStore(state, device).load(), desired, retry=False)
    observed = DockerEngine(args.docker_host).observe(device)
    result = plan(desired, observed, existing_paths=existing_paths(desired))
    notes = list(result.notes)
    if target.kind != "candidate":
        keep = f"apply keeps {target.revision}" if target.kind == "last-good" else "apply holds"
        notes.append(f"{target.reason} ({keep} unless --retry)")
    if args.output == "json":
        document = {**result.to_json(), "dirty": checkout.dirty, "notes": notes}
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    where = checkout.revision or "working tree (not a Git repository)"
    print(f"device {device} at {where}{' (uncommitted changes)' if checkout.dirty else ''}")
    for number, line in enumerate(result.describe(), start=1):
        print(f"{number:3}. {line}")
    if result.is_empty and not result.blocked:
        print("nothing to do: this host already runs the desired state")
    for reason in result.blocked:
        print(f"blocked: {reason}")
    for note in notes:
        print(f"note: {note}")
    return EXIT_OK
