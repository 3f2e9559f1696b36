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
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler import __version__
from reconciler.errors import FleetgateError, ManifestError, UsageError
from reconciler.logs import configure_logging
from reconciler.render import DEFAULT_STATE_DIR
from reconciler.source import Checkout, is_url, open_source

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
    "fleet",
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


def add_state_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        default=None,
        help=f"state directory (default: $FLEETGATE_STATE_DIR or {DEFAULT_STATE_DIR})",
    )


def state_dir_of(args: argparse.Namespace) -> Path:
    """``--state-dir`` wins over ``FLEETGATE_STATE_DIR``, which wins over the default."""
    return Path(args.state_dir or os.environ.get("FLEETGATE_STATE_DIR") or DEFAULT_STATE_DIR)


def add_repo_flags(parser: argparse.ArgumentParser) -> None:
    """``--repo PATH|URL`` and ``--ref REF``, shared by the commands that read a fleet."""
    parser.add_argument(
        "--repo", default=".", help="fleet repository: a folder or a Git URL (default: .)"
    )
    parser.add_argument(
        "--ref",
        default=None,
        help="branch, tag or commit to read (default: the working tree / HEAD)",
    )


def checkout_repo(repo: str, ref: str | None) -> Checkout:
    """The fleet repository named by ``--repo``/``--ref`` as a readable checkout.

    A Git URL is fetched into the user's cache (``$XDG_CACHE_HOME/fleetgate``, else
    ``~/.cache/fleetgate``); a folder is read as it is.
    """
    if not is_url(repo) and not Path(repo).is_dir():
        raise UsageError(f"--repo {repo}: not a folder or a Git URL; pass the fleet repository")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return open_source(repo, Path(base) / "fleetgate", ref=ref)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    try:
        args = build_parser().parse_args(argv)
        handler: Handler = args.handler
        return handler(args)
    except UsageError as e:
        for line in str(e).splitlines():  # one line per problem
            print(f"fleetgate: {line}", file=sys.stderr)
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
