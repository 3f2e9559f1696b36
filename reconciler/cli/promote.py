"""`fleetgate promote WAVE`: move a rollout wave to the revision its predecessor proved (§6).

``promote WAVE (--broker URL | --from DIR) [--repo PATH] [--dry-run] [--force --reason
TEXT] [--output text|json|markdown]`` reads the rollout of the local clone at ``HEAD``
(membership and pins), the previous wave's reports (a broker's retained messages, or a
folder of status files brought back on a stick), and asks the gate of
:mod:`reconciler.decide.waves`. The candidate is the previous wave's pin, or ``HEAD``
for the first wave; every pin must be an ancestor of ``HEAD``.

Met: it writes ``waves/WAVE.yaml`` and commits ``promote WAVE to <sha>`` (exit 0;
pushing or opening a merge request is the CI job's part). Not met: one line per reason
on stderr, nothing written, exit 3. ``--force --reason`` commits anyway and says so in
the commit message. ``--dry-run`` writes nothing (exit 0 met, 3 not met).
``--output markdown`` prints a merge-request body with the evidence table per device.
Staleness: with ``--broker`` a report older than ``--stale-after`` (default 15m) counts
as offline; with ``--from`` reports are as old as the visit that brought them, so only
an explicit ``--stale-after`` applies (the soak is measured up to each report anyway).
Exit 1 on any error (a dirty clone, an unknown wave, a pin that is not an ancestor).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.cli import EXIT_OK, add_output_flag, checkout_repo
from reconciler.cli.fleet import add_broker_flags, collect
from reconciler.cli.impact import review
from reconciler.cli.output import emit
from reconciler.decide.waves import Evidence, Verdict, short, wave_gate
from reconciler.errors import Finding, ManifestError, SourceError, UsageError
from reconciler.manifests.repository import load_repository
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.waves import Rollout, load_rollout, membership
from reconciler.model import rfc3339
from reconciler.render.device import DEFAULT_STATE_DIR
from reconciler.source.commits import (
    commit_file,
    dirty_paths,
    is_ancestor,
    pin_findings,
    release_candidate,
    resolve,
    scratch_cache,
    toplevel,
)
from reconciler.units import format_duration, parse_duration

EXIT_GATE = 3
SHA = re.compile(r"^[0-9a-f]{40}$")
PIN_FILE = "# written by fleetgate promote; undo with fleetgate rollback\nrevision: {revision}\n"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "promote",
        help="move a rollout wave to the revision its predecessor proved (§6)",
        description="Check the promotion gate of WAVE and commit waves/WAVE.yaml when it holds.",
    )
    parser.add_argument("wave", metavar="WAVE", help="the wave to promote (not the first)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--broker", help="MQTT broker: mqtt://HOST:1883 or mqtts://HOST:8883")
    source.add_argument("--from", dest="from_dir", help="folder of <device>.json status files")
    add_broker_flags(parser)
    parser.add_argument("--repo", default=".", help="local clone of the fleet repository")
    parser.add_argument("--dry-run", action="store_true", help="check the gate, write nothing")
    parser.add_argument("--force", action="store_true", help="skip the gate (needs --reason)")
    parser.add_argument("--reason", default=None, help="why the gate is skipped (with --force)")
    parser.add_argument(
        "--stale-after",
        default=None,
        help="a report older than this counts as offline (default 15m with --broker)",
    )
    add_output_flag(parser, "markdown")
    parser.set_defaults(handler=run)


def _rollout_at_head(root: Path, head: str) -> tuple[Rollout, dict[str, str]]:
    """The rollout and membership of the clone's committed ``HEAD``; errors as findings."""
    checkout = checkout_repo(str(root), head)
    tree = RepoTree(checkout.root)
    repo, _ = load_repository(tree, checkout.revision)
    rollout, findings = load_rollout(tree, repo)
    if findings:
        raise ManifestError(findings)
    if not rollout.declared:
        finding = Finding("fleet.yaml", 1, "no rollout.waves declared; add them to promote waves")
        raise ManifestError([finding])
    unrelated = pin_findings(root, head, rollout)
    if unrelated:
        raise ManifestError(unrelated)
    return rollout, membership(rollout, repo)


def decide(
    args: argparse.Namespace, root: Path, head: str, now: datetime
) -> tuple[Verdict, str | None]:
    """The gate's verdict for ``args.wave`` and the wave's current pin."""
    rollout, members = _rollout_at_head(root, head)
    names = [w.name for w in rollout.waves]
    wave = rollout.wave(args.wave)
    if wave is None:
        raise UsageError(f"no wave {args.wave!r} in fleet.yaml; waves: {', '.join(names)}")
    position = rollout.index(wave.name)
    if position == 0:
        raise UsageError(
            f"wave {wave.name!r} is the first wave: it follows the branch; promote {names[1]!r}"
            if len(names) > 1
            else f"wave {wave.name!r} is the only wave: it follows the branch"
        )
    previous = rollout.waves[position - 1].name
    candidate = release_candidate(root, head)[0] if position == 1 else rollout.pin(previous)
    stale = args.stale_after or ("15m" if args.broker else None)
    try:
        stale_after = None if stale is None else parse_duration(stale)
    except ValueError as e:
        raise UsageError(f"--stale-after: {e}") from None
    reports, problems = collect(args, members)
    for problem in problems:
        print(f"fleetgate: warning: {problem}", file=sys.stderr)
    evidence = [
        Evidence(d, reports[d].status if d in reports else None, _online(reports.get(d)))
        for d, w in members.items()
        if w == previous
    ]
    if candidate is not None:
        evidence = equivalent_evidence(root, candidate, evidence, now)
    verdict = wave_gate(rollout, position, candidate, evidence, now, stale_after=stale_after)
    return verdict, rollout.pin(wave.name)


def equivalent_evidence(
    root: Path, candidate: str, evidence: list[Evidence], now: datetime
) -> list[Evidence]:
    """Mark devices whose applied revision renders the same state for them as the candidate.

    Only an ancestor of the candidate qualifies; each distinct applied revision is compared
    once with ``impact`` (the devices whose desired state differs). An invalid side proves
    nothing.
    """
    changed: dict[str, frozenset[str] | None] = {}
    out: list[Evidence] = []
    with scratch_cache() as cache:
        for item in evidence:
            applied = item.status.get("applied_revision") if item.status else None
            if not isinstance(applied, str) or applied == candidate or not SHA.match(applied):
                out.append(item)
                continue
            if applied not in changed:
                changed[applied] = None
                if is_ancestor(root, applied, candidate):
                    result = review(
                        str(root),
                        applied,
                        candidate,
                        cache_dir=cache,
                        now=now,
                        state_dir=DEFAULT_STATE_DIR,
                    )
                    if not result.assessment.findings:
                        changed[applied] = frozenset(d.device for d in result.assessment.devices)
            differs = changed[applied]
            same = differs is not None and item.device not in differs
            out.append(replace(item, equivalent=same))
    return out


def _online(report: Any) -> bool | None:
    return None if report is None else report.online


def run(args: argparse.Namespace) -> int:
    if args.force and not args.reason:
        raise UsageError("--force needs --reason TEXT: the commit says why the gate was skipped")
    if args.reason and not args.force:
        raise UsageError("--reason goes with --force")
    root = toplevel(Path(args.repo))
    head = resolve(root, "HEAD")
    if not args.dry_run:
        dirty = dirty_paths(root)
        if dirty:
            shown = ", ".join(dirty[:3])
            raise SourceError(f"--repo {root}: uncommitted changes in {shown}; commit or stash")
    verdict, current = decide(args, root, head, datetime.now(UTC))
    already = verdict.candidate is not None and current == verdict.candidate
    print_verdict(args.output, verdict, already, args.force)
    if already:
        return EXIT_OK
    if not verdict.met and not args.force:
        return EXIT_GATE
    if args.dry_run or verdict.candidate is None:
        return EXIT_OK if verdict.met else EXIT_GATE
    sha = commit_file(
        root,
        f"waves/{verdict.wave}.yaml",
        PIN_FILE.format(revision=verdict.candidate),
        commit_message(verdict, args.reason if args.force else None),
    )
    if args.output == "text":
        emit([f"promoted {verdict.wave} to {verdict.candidate}: commit {sha}"])
    else:
        print(f"promoted {verdict.wave}: commit {sha}", file=sys.stderr)
    return EXIT_OK


def commit_message(verdict: Verdict, forced: str | None) -> str:
    lines = [f"promote {verdict.wave} to {verdict.candidate}", ""]
    if forced is not None:
        lines.append(f"FORCED past the promotion gate: {forced}")
        lines += [f"Unmet: {r}" for r in verdict.reasons] or ["(the gate held anyway)"]
    else:
        proved = sum(1 for r in verdict.devices if r.state == "proved")
        lines.append(
            f"Gate met: {proved} of {len(verdict.devices)} devices of wave {verdict.previous} "
            f"ran it healthy for at least {format_duration(verdict.soak)} "
            f"(maxFailed {verdict.max_failed})."
        )
    lines += ["", *(f"- {r.device}: {r.state} {r.detail}".rstrip() for r in verdict.devices)]
    return "\n".join(lines) + "\n"


def to_json(verdict: Verdict, already: bool) -> dict[str, Any]:
    return {
        "wave": verdict.wave,
        "previous_wave": verdict.previous,
        "candidate_revision": verdict.candidate,
        "soak_seconds": verdict.soak,
        "max_failed": verdict.max_failed,
        "met": verdict.met,
        "already_promoted": already,
        "reasons": list(verdict.reasons),
        "devices": [
            {
                "device": r.device,
                "state": r.state,
                "applied_revision": r.applied,
                "outcome": r.outcome,
                "since": rfc3339(r.since) if r.since else None,
                "soaked_seconds": r.soaked,
                "detail": r.detail,
            }
            for r in verdict.devices
        ],
    }


def to_markdown(verdict: Verdict) -> str:
    """A merge-request body: the verdict, the unmet conditions, the evidence per device."""
    state = "met" if verdict.met else "NOT met"
    out = [
        f"## Promote `{verdict.wave}` to `{verdict.candidate or 'nothing'}`",
        "",
        f"Gate {state}: wave `{verdict.previous}` must run it healthy for "
        f"{format_duration(verdict.soak)}, at most {verdict.max_failed} failed, rolled back, "
        "offline or silent. Merging this request is the approval.",
        "",
    ]
    out += [f"- {_cell(r)}" for r in verdict.reasons]
    out += ["", "| device | state | applied | outcome | healthy since | soaked | detail |"]
    out.append("|---|---|---|---|---|---|---|")
    for r in verdict.devices:
        since = rfc3339(r.since) if r.since else ""
        out.append(
            f"| {_cell(r.device)} | {r.state} | {short(r.applied)} | {_cell(r.outcome or '')} "
            f"| {since} | {format_duration(round(r.soaked))} | {_cell(r.detail)} |"
        )
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def print_verdict(output: str, verdict: Verdict, already: bool, forced: bool) -> None:
    if output == "json":
        emit(to_json(verdict, already), sort_keys=True)
    elif output == "markdown":
        emit(to_markdown(verdict))
    if already:
        print(
            f"wave {verdict.wave} already runs {verdict.candidate}; nothing to do", file=sys.stderr
        )
        return
    if verdict.met:
        if output == "text":
            emit([f"gate met: promote {verdict.wave} to {verdict.candidate}"])
        return
    word = "warning" if forced else "gate not met"
    for reason in verdict.reasons:
        print(f"fleetgate: {word}: {reason}", file=sys.stderr)
