"""The `fleetgate` command line: the composition root.

Each subcommand lives in its own module under ``reconciler.cli`` exposing
``register(subparsers)`` (adds its parser and sets ``handler``) and builds the
real adapters it needs. This module only parses, dispatches and maps outcomes to
exit codes: 0 success, 1 failure (invalid fleet, failed apply), 2 usage.
A :class:`FleetgateError` is printed as one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from reconciler import __version__
from reconciler.errors import FleetgateError, ManifestError, UsageError
from reconciler.logs import configure_logging

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

COMMANDS: tuple[str, ...] = (
    "validate",
    "render",
    "plan",
    "apply",
    "agent",
    "status",
    "impact",
    "history",
    "rollback",
    "bundle",
)
"""Subcommand modules under ``reconciler.cli``, in the order ``--help`` lists them."""

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line instead of a usage dump on errors."""

    def error(self, message: str) -> None:  # type: ignore[override]  # argparse's is NoReturn
        raise UsageError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fleetgate", description="GitOps reconciler for edge device fleets")
    parser.add_argument("--version", action="version", version=f"fleetgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"reconciler.cli.{name}")
        module.register(sub)
    return parser


def add_output_flag(parser: argparse.ArgumentParser, *extra: str) -> None:
    """``--output text|json`` (plus any extra formats), shared by every reporting command."""
    parser.add_argument(
        "--output",
        "-o",
        choices=("text", "json", *extra),
        default="text",
        help="output format (json: stable, documented fields)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    try:
        args = build_parser().parse_args(argv)
        handler: Handler = args.handler
        return handler(args)
    except UsageError as e:
        print(f"fleetgate: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ManifestError as e:
        for finding in e.findings:
            print(finding, file=sys.stderr)
        return EXIT_FAILED
    except FleetgateError as e:
        print(f"fleetgate: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
