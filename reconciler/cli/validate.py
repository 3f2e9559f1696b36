"""`fleetgate validate [--repo PATH] [--output json]`: check the whole fleet, for CI.

Text: one ``path:line: message`` line per finding on stdout, then one summary line on
stderr. JSON (stable fields): ``{"valid", "devices", "stacks", "findings": [{"path",
"line", "message"}]}``. Exit 0 valid, 1 invalid, 2 usage (``--repo`` not a folder).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from reconciler.cli import EXIT_FAILED, EXIT_OK, add_output_flag, add_repo_flags, checkout_repo
from reconciler.cli.output import emit
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.validate import check_fleet


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check schemas and semantics of the whole fleet (for CI)",
        description="Check every manifest of the fleet repository; exit 1 when any is invalid.",
    )
    add_repo_flags(parser)
    add_output_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    checkout = checkout_repo(args.repo, args.ref, args.allowed_signers)
    result = check_fleet(RepoTree(checkout.root), checkout.revision)
    if args.output == "json":
        document = {
            "valid": result.valid,
            "devices": result.devices,
            "stacks": result.stacks,
            "findings": [f.to_json() for f in result.findings],
        }
        emit(document)
    else:
        emit(str(f) for f in result.findings)
        if result.valid:
            summary = f"fleet valid: {result.devices} devices, {result.stacks} stacks"
        else:
            problems = len(result.findings)
            summary = (
                f"fleet invalid: {problems} problem{'s' if problems != 1 else ''} "
                f"in {result.files} file{'s' if result.files != 1 else ''}"
            )
        print(summary, file=sys.stderr)
    return EXIT_OK if result.valid else EXIT_FAILED
