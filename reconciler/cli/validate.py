"""`fleetgate validate [--repo PATH] [--output json]`: check the whole fleet, for CI.

Text: one ``path:line: message`` line per finding on stdout (``path:line: warning:
message`` for a warning), then one summary line on stderr. JSON (stable fields):
``{"valid", "devices", "stacks", "errors", "warnings", "findings": [{"path", "line",
"message", "severity"}]}``. Exit 0 valid (warnings alone never fail), 1 invalid, 2 usage
(``--repo`` not a folder). ``--strict`` makes warnings fatal (exit 1), for CI that wants a
warning-free fleet.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from reconciler.cli import EXIT_FAILED, EXIT_OK, add_output_flag, add_repo_flags, checkout_repo
from reconciler.cli.output import emit
from reconciler.errors import SourceError
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.validate import Validation, check_fleet


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check schemas and semantics of the whole fleet (for CI)",
        description="Check every manifest of the fleet repository; exit 1 when any is invalid.",
    )
    add_repo_flags(parser)
    add_output_flag(parser)
    parser.add_argument(
        "--strict",
        action="store_true",
        help="treat warnings as errors (exit 1 when there is any warning)",
    )
    parser.set_defaults(handler=run)


def with_pin_ancestry(result: Validation, repo: str, root: Path, head: str | None) -> Validation:
    """Add a finding per wave pin that is not an ancestor of the head (local clones only:
    that needs Git, which the pure validation never reads)."""
    if head is None or len(head) != 40 or not (root / "waves").is_dir():
        return result
    from reconciler.manifests.waves import load_rollout  # noqa: PLC0415  # rare path
    from reconciler.model import FleetManifest, FleetRepository  # noqa: PLC0415  # rare path
    from reconciler.source import is_url  # noqa: PLC0415  # Git only when pins exist
    from reconciler.source.commits import pin_findings  # noqa: PLC0415  # idem

    no_devices = FleetRepository(FleetManifest(), {}, {}, {})  # membership is checked already
    rollout = load_rollout(RepoTree(root), no_devices)[0]
    if is_url(repo) or not rollout.pins:
        return result
    try:
        extra = pin_findings(Path(repo), head, rollout)
    except SourceError:
        return result
    merged = sorted({*result.findings, *extra}, key=lambda f: (f.path, f.line or 0, f.message))
    return replace(result, findings=tuple(merged))


def run(args: argparse.Namespace) -> int:
    checkout = checkout_repo(args.repo, args.ref, args.allowed_signers)
    result = check_fleet(RepoTree(checkout.root), checkout.revision)
    result = with_pin_ancestry(result, args.repo, checkout.root, checkout.revision)
    valid = result.valid and not (args.strict and result.warnings)
    if args.output == "json":
        document = {
            "valid": valid,
            "devices": result.devices,
            "stacks": result.stacks,
            "errors": result.errors,
            "warnings": result.warnings,
            "findings": [f.to_json() for f in result.findings],
        }
        emit(document)
    else:
        emit(str(f) for f in result.findings)
        print(_summary(result, valid, strict=args.strict), file=sys.stderr)
    return EXIT_OK if valid else EXIT_FAILED


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _summary(result: Validation, valid: bool, *, strict: bool) -> str:
    warned = f", {_plural(result.warnings, 'warning')}" if result.warnings else ""
    if valid:
        return f"fleet valid: {result.devices} devices, {result.stacks} stacks{warned}"
    if not result.errors:  # --strict with warnings only
        return f"fleet invalid (--strict): {_plural(result.warnings, 'warning')}"
    return (
        f"fleet invalid: {_plural(result.errors, 'problem')} "
        f"in {_plural(len({f.path for f in result.findings if f.is_error}), 'file')}{warned}"
    )
