"""The `fleetgate` command line: the composition root.

Each subcommand lives in its own module under ``reconciler.cli`` exposing
``register(subparsers)`` (adds its parser and sets ``handler``) and builds the
real adapters it needs. This module only parses, dispatches and maps outcomes to
exit codes: 0 success, 1 failure (invalid fleet, failed apply), 2 usage.
A :class:`FleetgateError` is printed as one line on stderr, never a traceback, and
without credentials: neither URL userinfo nor the credentials of a URL on the command
line (:mod:`reconciler.redaction`).

Whatever a command prints may quote the fleet repository, which is untrusted: while a
command runs, stdout and stderr escape every control character (ESC, NUL, C1, bidi
overrides) except newline and tab as ``\\uNNNN``, so no manifest can recolour, move or
reorder what a reviewer reads (``\\uNNNN`` is also a valid escape inside JSON strings).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

from reconciler import __version__
from reconciler.cli.output import quiet_broken_pipe
from reconciler.errors import (
    UNSAFE_OUTPUT,
    FleetgateError,
    ManifestError,
    UsageError,
    escape_text,
)
from reconciler.redaction import redact, redact_url, text_secrets

if TYPE_CHECKING:
    from reconciler.source import Checkout

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
    "promote",
)
"""Subcommand modules under ``reconciler.cli``, in the order ``--help`` lists them."""

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line instead of a usage dump on errors."""

    def error(self, message: str) -> None:  # type: ignore[override]  # argparse's is NoReturn
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _commands_for(argv: Sequence[str]) -> tuple[str, ...]:
    """The subcommand modules a command line needs: only the one it names.

    A command's module pulls in its whole stage (the engine, Git, the schemas), so
    importing every command before parsing cost most of a no-change ``apply``. Without a
    known command (``--help``, a typo) every command is registered, so help and
    did-you-mean see them all; ``--version`` alone needs none.
    """
    for arg in argv:
        if arg in COMMANDS:
            return (arg,)
        if not arg.startswith("-"):
            break
    if list(argv) == ["--version"]:
        return ()
    return COMMANDS


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="fleetgate", description="GitOps reconciler for edge device fleets")
    parser.add_argument("--version", action="version", version=f"fleetgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS if argv is None else _commands_for(argv):
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


DEFAULT_STATE_DIR = "/var/lib/fleetgate"
"""The render stage's default (``reconciler.render.device``), not imported from there: a
no-change ``apply`` would load the render stage just to print this help."""


def add_state_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        default=None,
        help=f"state directory (default: $FLEETGATE_STATE_DIR or {DEFAULT_STATE_DIR})",
    )


def state_dir_of(args: argparse.Namespace) -> Path:
    """``--state-dir`` wins over ``FLEETGATE_STATE_DIR``, which wins over the default."""
    chosen = args.state_dir or os.environ.get("FLEETGATE_STATE_DIR") or DEFAULT_STATE_DIR
    # Absolute before it reaches anything: the engine resolves bind sources on its own
    # host, where a relative path means nothing.
    return Path(chosen).absolute()


def selector_of(items: Sequence[str]) -> dict[str, str]:
    """``--selector LABEL=VALUE`` options as a mapping (a usage error names a bad one)."""
    selector: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--selector {item!r}: write LABEL=VALUE, e.g. site=plant-a")
        selector[key] = value
    return selector


def add_repo_flags(parser: argparse.ArgumentParser) -> None:
    """``--repo PATH|URL`` and ``--ref REF``, shared by the commands that read a fleet."""
    parser.add_argument(
        "--repo", default=".", help="fleet repository: a folder or a Git URL (default: .)"
    )
    parser.add_argument(
        "--ref",
        default=None,
        help="branch, tag or commit to read (default: the working tree / HEAD); "
        "40 hex digits always name a commit",
    )
    parser.add_argument(
        "--allowed-signers",
        type=Path,
        default=None,
        help="read only a commit signed by a key in this file (its committed files, "
        "never the working tree)",
    )


def checkout_repo(repo: str, ref: str | None, allowed_signers: Path | None = None) -> Checkout:
    """The fleet repository named by ``--repo``/``--ref`` as a readable checkout.

    A Git URL is fetched into the user's cache (``$XDG_CACHE_HOME/fleetgate``, else
    ``~/.cache/fleetgate``); a folder is read as it is, unless ``--allowed-signers``
    asks for the signed commit's files.
    """
    from reconciler.source import is_url, open_source  # noqa: PLC0415  # Git only when read

    if not is_url(repo) and not Path(repo).is_dir():
        shown = redact_url(repo)
        raise UsageError(f"--repo {shown}: not a folder or a Git URL; pass the fleet repository")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return open_source(repo, Path(base) / "fleetgate", ref=ref, allowed_signers=allowed_signers)


class EscapingWriter(io.TextIOBase):
    """A text stream that writes to ``target`` with control characters escaped."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target

    def write(self, text: str) -> int:
        self.target.write(UNSAFE_OUTPUT.sub(lambda m: f"\\u{ord(m.group()):04x}", text))
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]  # TextIOBase declares it an attribute
        return getattr(self.target, "encoding", "utf-8")


def run_command() -> int:
    """The ``fleetgate`` process's entry point (the console script, ``python -m reconciler``).

    structlog imports ``rich`` for its console tracebacks whenever it is installed (dev
    tools such as import-linter bring it along); fleetgate never renders through rich,
    and that import cost every command about 0.1 s of CPU. So the process declines it
    up front. Only the process entry does this: ``main()`` called in-process leaves
    ``sys.modules`` alone.
    """
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]  # None: "not importable"
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    out, err = sys.stdout, sys.stderr
    sys.stdout = cast(TextIO, EscapingWriter(out))
    sys.stderr = cast(TextIO, EscapingWriter(err))
    try:
        code = _run(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly
        return quiet_broken_pipe()
    finally:
        with contextlib.suppress(OSError, ValueError):  # a closed pipe is not our error
            sys.stdout.flush()
        sys.stdout, sys.stderr = out, err


def _run(argv: Sequence[str] | None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    hidden = text_secrets(words)  # --repo u:pw@... credentials
    try:
        args = build_parser(words).parse_args(words)
        # after parsing: --version and --help do not pay for structlog's import
        from reconciler.report.logs import configure_logging  # noqa: PLC0415

        configure_logging()
        handler: Handler = args.handler
        return handler(args)
    except UsageError as e:
        for line in str(e).splitlines():  # one line per problem
            print(f"fleetgate: {escape_text(redact(line, hidden))}", file=sys.stderr)
        return EXIT_USAGE
    except ManifestError as e:
        for finding in e.findings:
            print(redact(str(finding), hidden), file=sys.stderr)
        return EXIT_FAILED
    except FleetgateError as e:
        print(f"fleetgate: {escape_text(redact(str(e), hidden))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
