"""`fleetgate history --device ID [--repo PATH] [--rev REV] [--limit N] [--output json]`.

The commits that changed one device's rendered state, newest first, with what changed
(the same reasons as ``impact``): "what ran when" for an auditor. History follows first
parents from ``--rev`` (default ``HEAD``): the revisions the branch actually pointed to.

Rollout promotions (commits whose subject is ``promote WAVE to <sha>``, DESIGN.md §6) are
listed apart, newest first: they move a wave's pin, not the branch's files, so they change
no device's state at the branch head yet decide what runs in later waves.

JSON (stable fields): ``{"device", "revision", "entries": [{"commit", "parent", "author",
"authoredAt", "committedAt", "subject", "problem", "impact": <impact device object> |
null}], "promotions": [{"commit", "author", "committedAt", "wave", "to", "forced"}]}``.
Exit 0; 2 usage; 1 when the repository cannot be read.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.cli import EXIT_OK, add_output_flag
from reconciler.cli.impact import add_common, device_document, device_lines
from reconciler.cli.output import emit
from reconciler.errors import ManifestError, UsageError
from reconciler.manifests.repository import load_repository
from reconciler.manifests.tree import RepoTree
from reconciler.model import DesiredState
from reconciler.render.device import RenderCache, render_device
from reconciler.review.history import HistoryEntry, could_touch
from reconciler.review.impact import compare_device
from reconciler.source import open_source
from reconciler.source.commits import commit_message, first_parent_log, scratch_cache, toplevel


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "history",
        help="the commits that changed one device's desired state, newest first",
        description="List the commits that changed a device's rendered state (for audits).",
    )
    parser.add_argument("--device", required=True, help="device id (devices/<id>.yaml)")
    parser.add_argument("--rev", default="HEAD", help="start from this revision (default: HEAD)")
    parser.add_argument("--limit", type=int, default=20, help="at most N entries (default: 20)")
    add_common(parser)
    add_output_flag(parser)
    parser.set_defaults(handler=run)


_Rendered = tuple[DesiredState | None, str | None]  # (state, first finding when invalid)


def _state(repo: str, cache: Path, sha: str | None, device: str, state_dir: str) -> _Rendered:
    if sha is None:
        return None, None
    checkout = open_source(repo, cache, ref=sha)
    fleet, _ = load_repository(RepoTree(checkout.root), sha)
    if device not in fleet.devices:
        return None, None
    try:
        tree = RepoTree(checkout.root)
        return render_device(fleet, tree, device, state_dir, RenderCache()).state, None
    except ManifestError as e:
        return None, str(e)


def device_history(
    repo: str,
    rev: str,
    device: str,
    *,
    cache: Path,
    now: datetime,
    state_dir: str,
    limit: int,
) -> list[HistoryEntry]:
    """Walk first parents from ``rev``; render the device only where a commit could touch it."""
    root = toplevel(Path(repo))
    memo: dict[str | None, _Rendered] = {}

    def state(sha: str | None) -> _Rendered:
        if sha not in memo:
            memo[sha] = _state(str(root), cache, sha, device, state_dir)
        return memo[sha]

    entries: list[HistoryEntry] = []
    for commit in first_parent_log(root, rev):
        if len(entries) >= limit:
            break
        if commit.parents and not could_touch(commit.paths, device):
            continue
        parent = commit.parents[0] if commit.parents else None
        (before, _), (after, problem) = state(parent), state(commit.sha)
        impact = None if problem else compare_device(before, after, now)
        if impact is None and problem is None:
            continue
        entries.append(
            HistoryEntry(
                commit=commit.sha,
                parent=parent,
                author=commit.author,
                authored_at=commit.authored_at,
                committed_at=commit.committed_at,
                subject=commit.subject,
                impact=impact,
                problem=problem,
            )
        )
    return entries


PROMOTION = re.compile(r"^promote ([a-z0-9][a-z0-9-]{0,62}) to ([0-9a-f]{40})$")


def promotions(repo: str, rev: str, limit: int) -> list[dict[str, Any]]:
    """Promotion commits reachable from ``rev`` along first parents, newest first."""
    root = toplevel(Path(repo))
    found: list[dict[str, Any]] = []
    for commit in first_parent_log(root, rev):
        match = PROMOTION.match(commit.subject)
        if match is None:
            continue
        body = commit_message(root, commit.sha)
        found.append(
            {
                "commit": commit.sha,
                "author": commit.author,
                "committedAt": commit.committed_at,
                "wave": match.group(1),
                "to": match.group(2),
                "forced": "FORCED past the promotion gate" in body,
            }
        )
        if len(found) >= limit:
            break
    return found


def run(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit {args.limit}: give a positive number of entries")
    now = args.now or datetime.now(UTC)
    with scratch_cache(args.cache_dir) as cache:
        entries = device_history(
            args.repo,
            args.rev,
            args.device,
            cache=cache,
            now=now,
            state_dir=args.state_dir,
            limit=args.limit,
        )
    moves = promotions(args.repo, args.rev, args.limit)
    if args.output == "json":
        document = {
            "device": args.device,
            "revision": args.rev,
            "entries": [_entry_document(e) for e in entries],
            "promotions": moves,
        }
        emit(document, ascii_only=False)
        return EXIT_OK
    lines: list[str] = []
    if not entries:
        lines.append(f"no commit reachable from {args.rev} changed device {args.device}")
    for entry in entries:
        lines.append(f"{entry.commit[:12]} {entry.committed_at} {entry.author}  {entry.subject}")
        if entry.impact is None:
            problem = entry.problem
            lines.append(
                f"  invalid for this device (the agent kept its previous state): {problem}"
            )
            continue
        lines.append(f"  device {entry.impact.kind}")
        lines.extend(device_lines(entry.impact, "  "))
    if moves:
        lines.append("\npromotions:")
    for move in moves:
        forced = " (FORCED past the gate)" if move["forced"] else ""
        lines.append(
            f"{move['commit'][:12]} {move['committedAt']} {move['author']}  "
            f"wave {move['wave']} -> {move['to'][:12]}{forced}"
        )
    emit(lines)
    return EXIT_OK


def _entry_document(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "commit": entry.commit,
        "parent": entry.parent,
        "author": entry.author,
        "authoredAt": entry.authored_at,
        "committedAt": entry.committed_at,
        "subject": entry.subject,
        "problem": entry.problem,
        "impact": device_document(entry.impact) if entry.impact else None,
    }
