"""The error vocabulary of fleetgate.

Every error a user can cause or meet is a :class:`FleetgateError`. Its subclass says
what happens next, so the agent loop and the command line never inspect messages:

- :class:`ManifestError` — the fleet repository is wrong; stall until a new revision.
- :class:`UsageError` — the command line or agent configuration is wrong; exit 2.
- :class:`SourceError` — Git/bundle source unreachable or refused; retry with backoff.
- :class:`EngineError` — the Docker engine failed; retry with backoff.
- :class:`ImageUnavailable` — a pull failed; nothing running is stopped.
- :class:`PlantedLink` — a symlink under the state directory; nothing is touched.
- :class:`HealthError` — a service did not become healthy; roll back.

Adapters translate foreign exceptions at the border (``raise EngineError(...) from e``)
so that no ``docker`` or ``git`` exception type leaks into the core.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal

from reconciler.redaction import redact_urls

CONTROL_CHARS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029\u200e\u200f\u061c]"
)
"""Characters that must never reach a terminal raw: C0 and C1 controls (NUL, ESC, CR,
line breaks), DEL, bidirectional overrides/isolates/marks and Unicode line separators.
They can move the cursor, recolour or reorder what a reviewer reads."""

UNSAFE_OUTPUT = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029\u200e\u200f\u061c]"
)
""":data:`CONTROL_CHARS` less newline and tab, which multi-line output uses for its layout."""


def escape_text(text: str) -> str:
    """``text`` with every :data:`CONTROL_CHARS` character written as ``\\xNN`` / ``\\uNNNN``.

    The one place user input is made safe to print: a finding quoting ``a<ESC>[31mb``
    prints ``a\\x1b[31mb``; anything already printable is left as it is.
    """
    return CONTROL_CHARS.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def describe_control(char: str) -> str:
    """``U+001B`` for the message that refuses a control character."""
    return f"U+{ord(char):04X}"


Severity = Literal["error", "warning"]
"""How much a :class:`Finding` weighs: an ``error`` rejects the revision (validate exits 1,
apply and the agent change nothing); a ``warning`` is printed and never blocks anything
(``validate --strict`` makes it fatal for CI)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem in the fleet repository, printed as ``path:line: message``.

    ``path`` is relative to the repository root (POSIX separators). ``line`` is
    1-based, or ``None`` when the problem has no single line (a missing file).
    ``message`` loses URL credentials on creation: a finding may quote a value.
    A warning prints as ``path:line: warning: message``.
    """

    path: str
    line: int | None
    message: str
    severity: Severity = "error"

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", redact_urls(self.message))

    def __str__(self) -> str:
        """One printable line: control characters of the path or message are escaped."""
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        mark = "warning: " if self.severity == "warning" else ""
        return escape_text(f"{where}: {mark}{self.message}")

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "message": self.message,
            "severity": self.severity,
        }

    def __lt__(self, other: Finding) -> bool:
        """Report order: by file, then line (file-wide findings first), then message."""
        return (self.path, self.line or 0, self.message) < (
            other.path,
            other.line or 0,
            other.message,
        )


NextStep = Literal["fix", "retry", "stall", "rollback"]
"""What happens after an error, carried by its class (``FleetgateError.next_step``):

- ``fix``: a person must change the command line or configuration (exit code 2);
- ``retry``: the same thing may work later; the agent retries with backoff;
- ``stall``: a verdict on *this* revision; nothing retries it, the agent keeps what
  runs and polls at its normal pace until the ref moves to a new revision;
- ``rollback``: the update failed on the device; the pass returns to the last good state.
"""


class FleetgateError(Exception):
    """Root of every error fleetgate raises on purpose; ``str()`` is one user-facing line
    (print it through :func:`escape_text`: it may quote user input)."""

    next_step: ClassVar[NextStep] = "retry"


class UsageError(FleetgateError):
    """Bad command line or agent configuration (exit code 2)."""

    next_step: ClassVar[NextStep] = "fix"


class ManifestError(FleetgateError):
    """The fleet repository (or one file of it) is invalid; carries every finding.

    The revision is rejected: it stalls until a new one is pushed.
    """

    next_step: ClassVar[NextStep] = "stall"

    def __init__(self, findings: Iterable[Finding]) -> None:
        self.findings: tuple[Finding, ...] = tuple(sorted(findings))
        first = str(self.findings[0]) if self.findings else "invalid fleet repository"
        more = len(self.findings) - 1
        super().__init__(first if more <= 0 else f"{first} (and {more} more)")


class SourceError(FleetgateError):
    """The Git repository or bundle could not be read or was refused; retry later."""


class SignatureError(SourceError):
    """A commit or bundle is unsigned or signed by a key that is not allowed (stalls)."""

    next_step: ClassVar[NextStep] = "stall"


class RewindRefused(SourceError):
    """The tracked ref moved backwards or to an unrelated history (anti-rollback; stalls)."""

    next_step: ClassVar[NextStep] = "stall"


class EngineError(FleetgateError):
    """The Docker engine refused or failed an operation; retry with backoff."""


class ImageUnavailable(EngineError):
    """An image could not be pulled; the running version stays."""

    def __init__(self, image: str, reason: str) -> None:
        self.image = image
        super().__init__(f"image {image} could not be pulled: {reason}")


class PlantedLink(EngineError):
    """A path under the state directory has a symlink (a container may have planted it).

    Nothing is created or written through it; the pass stops before it touches anything
    (safety rule 9) and the next pass checks again once someone removed the link.
    """


class NameConflict(EngineError):
    """A container name fleetgate needs is held by a container it does not own."""


class HealthError(FleetgateError):
    """Services did not become healthy within the timeout; the pass rolls back."""

    next_step: ClassVar[NextStep] = "rollback"
