"""`fleetgate rollback [REV] [--repo PATH] [-m PARENT]`: commit the revert of REV.

A rollback is a `git revert` (DESIGN): the new commit restores the files REV changed,
on top of the current branch of the local clone, and its message names the devices
whose desired state the revert changes (computed by ``impact`` between the current
``HEAD`` and the revert, so later commits are taken into account). Push it (or open a
merge request) to roll the fleet back; nothing is pushed here.

Refused with one line: a dirty tree (commit or stash first), a merge commit without
``-m PARENT``, an unknown REV, a revert that conflicts with later commits.
Exit 0 (prints the new commit's SHA), 1 refused.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.cli import EXIT_OK
from reconciler.cli.impact import review
from reconciler.cli.output import emit
from reconciler.errors import SourceError, UsageError
from reconciler.render.device import DEFAULT_STATE_DIR
from reconciler.review.impact import affected_names
from reconciler.source.commits import (
    commit_info,
    dirty_paths,
    resolve,
    revert,
    reword_head,
    scratch_cache,
    toplevel,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rollback",
        help="make the git revert commit that undoes REV",
        description="Create the commit that reverts REV (default HEAD) in the local clone.",
    )
    parser.add_argument("rev", metavar="REV", nargs="?", default="HEAD", help="default: HEAD")
    parser.add_argument("--repo", default=".", help="local clone of the fleet repository")
    parser.add_argument(
        "-m",
        "--mainline",
        type=int,
        metavar="PARENT",
        help="for a merge commit: the parent number (1 = the branch merged into)",
    )
    parser.set_defaults(handler=run)


def message(subject: str, sha: str, devices: str, count: int) -> str:
    return (
        f'Revert "{subject}"\n\n'
        f"This reverts commit {sha}.\n\n"
        f"Devices whose desired state changes ({count}): {devices}\n"
    )


def run(args: argparse.Namespace) -> int:
    root = toplevel(Path(args.repo))
    sha = resolve(root, args.rev)
    info = commit_info(root, sha)
    if len(info.parents) > 1 and args.mainline is None:
        raise UsageError(
            f"{sha[:12]} is a merge commit; pass -m 1 to revert the changes it merged "
            f"(parents: {', '.join(p[:12] for p in info.parents)})"
        )
    if args.mainline is not None and not 1 <= args.mainline <= len(info.parents):
        raise UsageError(f"-m {args.mainline}: {sha[:12]} has {len(info.parents)} parent(s)")
    if len(info.parents) == 1 and args.mainline is not None:
        raise UsageError(f"-m is only for merge commits; {sha[:12]} has one parent")
    if not info.parents:
        raise SourceError(f"{sha[:12]} is the first commit; there is nothing to revert to")
    dirty = dirty_paths(root)
    if dirty:
        raise SourceError(
            f"the working tree has uncommitted changes ({', '.join(dirty[:3])}"
            f"{' ...' if len(dirty) > 3 else ''}); commit or stash them first"
        )
    head = resolve(root, "HEAD")
    placeholder = message(info.subject, sha, "(computing)", 0)
    new = revert(root, sha, args.mainline, placeholder)
    with scratch_cache() as cache:
        result = review(
            str(root),
            head,
            new,
            cache_dir=cache,
            now=datetime.now(UTC),
            state_dir=DEFAULT_STATE_DIR,
        )
    devices = result.assessment.devices
    final = message(info.subject, sha, affected_names(devices), len(devices))
    if result.assessment.findings:
        final += f"\nWarning: the reverted tree has {len(result.assessment.findings)} findings.\n"
    amended = reword_head(root, final)
    emit([amended])
    print(
        f"reverted {sha[:12]}; {len(devices)} device(s) change: {affected_names(devices)}",
        file=sys.stderr,
    )
    return EXIT_OK
