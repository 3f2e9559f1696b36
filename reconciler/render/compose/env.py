"""A service's environment: ``env_file`` files from the repository plus ``environment``.

The "shell environment" Compose would consult is, for fleetgate, the stack's
interpolation variables (repository variables and builtins; never the process
environment, so render stays deterministic). Hence, as ``docker compose`` does with
its environment:

- ``environment: [NAME]`` / ``NAME: null`` takes ``NAME`` from the variables and is
  omitted when no such variable exists;
- an env file is parsed like compose-go's dotenv: ``#`` comment lines, ``export``
  prefixes, ``KEY=VALUE`` trimmed, `` #`` starts an inline comment in unquoted values,
  single quotes are literal, double quotes understand ``\\n \\t \\" \\\\``; unquoted and
  double-quoted values are interpolated with the variables plus the file's earlier keys;
  a bare ``KEY`` line is looked up like ``environment: [KEY]``;
- files are read in order, later files override earlier ones, ``environment`` wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.render.interpolation import (
    InvalidTemplate,
    RequiredVariable,
    referenced_variables,
    substitute,
)

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class EnvFileError(ValueError):
    """A malformed line; ``line`` is 1-based within the env file."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True, slots=True)
class EnvLine:
    """One assignment: ``value`` is ``None`` for a bare ``KEY`` (look it up)."""

    key: str
    value: str | None
    quote: str  # "", "'" or '"'
    line: int


def _double_quoted(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body) and body[i + 1] in _ESCAPES:
            nxt = body[i + 1]
            out.append("\\$" if nxt == "$" else _ESCAPES[nxt])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_env_file(text: str) -> tuple[EnvLine, ...]:
    """The assignments of a dotenv file, in order; raise :class:`EnvFileError`."""
    out: list[EnvLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if "\x00" in raw:  # the engine cannot carry it; every other character is escaped on output
            raise EnvFileError(number, "contains a NUL character (U+0000); remove it")
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not _KEY.match(key):
            raise EnvFileError(number, f"{key!r} is not a variable name; write KEY=value")
        if not sep:
            out.append(EnvLine(key, None, "", number))
            continue
        rest = rest.strip()
        if rest[:1] in ("'", '"'):
            quote = rest[0]
            end = rest.rfind(quote)
            if end == 0:
                raise EnvFileError(number, f"unterminated {quote} quote; close it")
            body = rest[1:end]
            value = body if quote == "'" else _double_quoted(body)
            out.append(EnvLine(key, value, quote, number))
            continue
        comment = re.search(r"\s#", rest)
        value = rest[: comment.start()].rstrip() if comment else rest
        out.append(EnvLine(key, value, "", number))
    return tuple(out)


def resolve_env_file(lines: tuple[EnvLine, ...], variables: Mapping[str, str]) -> dict[str, str]:
    """Values of an env file given the stack variables (see module doc)."""
    own: dict[str, str] = {}
    for entry in lines:
        if entry.value is None:
            if entry.key in variables:
                own[entry.key] = variables[entry.key]
            continue
        if entry.quote == "'":
            own[entry.key] = entry.value
            continue
        lookup = {**variables, **own}
        try:
            # "\\$" marks an escaped dollar from a double-quoted value: keep it literal.
            own[entry.key] = substitute(entry.value.replace("\\$", "$$"), lookup)
        except InvalidTemplate:
            raise EnvFileError(
                entry.line, "invalid interpolation; use $$ for a literal $"
            ) from None
        except RequiredVariable as e:
            raise EnvFileError(
                entry.line, f"variable {e.variable} is required ({e.message})"
            ) from None
    return own


def env_file_names(lines: tuple[EnvLine, ...]) -> frozenset[str]:
    """Variables an env file may look up (for render's cache key)."""
    names = {e.key for e in lines if e.value is None}
    names |= referenced_variables([e.value for e in lines if e.value and e.quote != "'"])
    return frozenset(names)
