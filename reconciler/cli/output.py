"""One way out for a command's result: :func:`emit` writes JSON or text to stdout.

Every command hands its whole result to :func:`emit` (JSON documents indented, text as
lines), so the format rules live here once. A reader that goes away early
(``fleetgate plan -o json | head -1``) is not an error: :func:`quiet_broken_pipe`
points stdout at ``/dev/null`` so nothing more is written or reported, and ``main``
exits with :data:`EXIT_PIPE` without a word on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable, Mapping

EXIT_PIPE = 141
"""Exit code when stdout's reader closed the pipe (128 + SIGPIPE, as a shell reports it)."""


def emit(
    result: Mapping[str, object] | str | Iterable[str],
    *,
    sort_keys: bool = False,
    ascii_only: bool = True,
) -> None:
    """Write ``result`` to stdout: a JSON document (a mapping) indented, a string as it
    is, any other iterable of strings as lines (each gets a newline)."""
    if isinstance(result, Mapping):
        text = json.dumps(result, indent=2, sort_keys=sort_keys, ensure_ascii=ascii_only)
        sys.stdout.write(text + "\n")
    elif isinstance(result, str):
        sys.stdout.write(result)
    else:
        sys.stdout.writelines(f"{line}\n" for line in result)


def quiet_broken_pipe() -> int:
    """After a ``BrokenPipeError`` on stdout: silence stdout for good, return :data:`EXIT_PIPE`.

    Python flushes stdout again at exit; pointing the descriptor at ``/dev/null`` keeps
    that flush from printing "Exception ignored ... BrokenPipeError".
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ else 1)
        os.close(devnull)
    return EXIT_PIPE
