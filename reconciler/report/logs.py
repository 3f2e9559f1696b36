"""Structured logging: JSON lines when stderr is not a terminal, readable lines when it is.

Every module logs *events with fields* through ``structlog.get_logger()``; this
module only decides how they are rendered. Secrets must never be passed as
fields: values that could hold them (environment, credentials) are not logged, and as
a last guard every field of every event has its URL credentials redacted
(:func:`reconciler.redaction.redact_log_event`) before it is rendered.
"""

from __future__ import annotations

import logging
import sys
import threading

import structlog

from reconciler.redaction import redact_log_event


class _StderrLogger:
    """Writes each rendered event to *the current* ``sys.stderr``.

    Looking the stream up per event (instead of binding it once) keeps logging
    working when stderr is swapped, as test runners and daemons do.
    """

    def __init__(self, *_args: object) -> None:
        pass

    _lock = threading.Lock()  # one line per event even when several threads log at once

    def msg(self, message: str) -> None:
        with self._lock:
            stream = sys.stderr
            stream.write(message + "\n")
            stream.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def configure_logging(*, json: bool | None = None, level: str = "info") -> None:
    """Route structlog to stderr; ``json=None`` picks JSON unless stderr is a TTY."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if use_json
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_log_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=False,
    )
