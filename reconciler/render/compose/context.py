"""What Compose normalization of one stack on one device knows, and how it reports.

Normalization is split by Compose area (``compose.py`` services, ``compose_ports.py``,
``compose_mounts.py``, ``compose_resources.py``); they share this context and the
:class:`Issues` collector so that *every* problem of a document is reported in one
pass, each as ``compose.yaml:line: services.x.key: what is wrong; what to do``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import Finding
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.yamlio import LineDict, LineList
from reconciler.units import parse_bytes, parse_duration


@dataclass(frozen=True, slots=True)
class StackContext:
    """Inputs of one stack's normalization besides the (interpolated) document."""

    tree: RepoTree  # one revision; it memoizes path kinds and digests
    device: str
    stack: str
    compose_path: str  # "stacks/<stack>/compose.yaml"
    state_dir: str
    lock_dir: str
    variables: Mapping[str, str]  # for env_file expansion, like compose's lookup
    seed: tuple[str, ...] = ()  # stack.yaml `seed:` (repository paths): seed, then persist

    def seeded(self, repo_rel: str) -> bool:
        """Whether a repository path is (under) a seeded path of stack.yaml."""
        return any(repo_rel == s or repo_rel.startswith(s + "/") for s in self.seed)

    @property
    def stack_dir(self) -> str:
        head, _, _ = self.compose_path.rpartition("/")
        return head

    @property
    def prefix(self) -> str:
        """Engine object name prefix: ``{device}_{stack}_``."""
        return f"{self.device}_{self.stack}_"


@dataclass(slots=True)
class Issues:
    """Collects findings against one compose file (mutable on purpose, local to a pass)."""

    path: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, line: int | None, where: str, message: str) -> None:
        self.findings.append(Finding(self.path, line, f"{where}: {message}"))

    def warn(self, line: int | None, where: str, message: str) -> None:
        """A warning: printed by validate, never blocking (see :data:`Severity`)."""
        self.findings.append(Finding(self.path, line, f"{where}: {message}", "warning"))


def line_of(node: Any, key: str | int, default: int | None = None) -> int | None:
    """Line of a key/item in a LineDict/LineList (falls back to ``default``)."""
    if isinstance(node, LineDict) and isinstance(key, str):
        return node.line_of(key)
    if isinstance(node, LineList) and isinstance(key, int):
        return node.line_of(key)
    return default


def scalar_text(value: Any) -> str:
    """A YAML scalar as Compose turns it into a string (``true``, ``1``, ``0.5``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def is_true(value: Any) -> bool:
    """A Compose boolean that may arrive as a string after interpolation (``"true"``)."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


class Reader:
    """Typed accessors for one mapping of the document, reporting type mistakes."""

    def __init__(self, node: Mapping[str, Any], where: str, issues: Issues) -> None:
        self.node = node
        self.where = where
        self.issues = issues

    def line(self, key: str) -> int | None:
        return line_of(self.node, key, getattr(self.node, "line", None))

    def bad(self, key: str, message: str) -> None:
        self.issues.add(self.line(key), f"{self.where}.{key}", message)

    def str_(self, key: str) -> str | None:
        value = self.node.get(key)
        if value is None:
            return None
        if isinstance(value, dict | list):
            self.bad(key, "must be a string")
            return None
        return scalar_text(value)

    def bool_(self, key: str) -> bool | None:
        value = self.node.get(key)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.bad(key, f"{value!r} is not a boolean; write true or false")
        return None

    def int_(self, key: str) -> int | None:
        value = self.node.get(key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        self.bad(key, f"{value!r} is not an integer")
        return None

    def duration(self, key: str) -> float | None:
        value = self.node.get(key)
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as e:
            self.bad(key, str(e))
            return None

    def size(self, key: str) -> int | None:
        value = self.node.get(key)
        if value is None:
            return None
        try:
            return parse_bytes(value if isinstance(value, int) else scalar_text(value))
        except ValueError as e:
            self.bad(key, str(e))
            return None

    def str_list(self, key: str) -> tuple[str, ...]:
        """A list of strings; a single string is a one-item list."""
        value = self.node.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or any(isinstance(v, dict | list) for v in value):
            self.bad(key, "must be a list of strings")
            return ()
        return tuple(scalar_text(v) for v in value)

    def pairs(self, key: str, sep: str = "=") -> tuple[tuple[str, str | None], ...]:
        """A Compose "map or list" (``{K: v}`` or ``["K=v", "K"]``); ``None`` for no value."""
        value = self.node.get(key)
        if value is None:
            return ()
        if isinstance(value, dict):
            return tuple((str(k), None if v is None else scalar_text(v)) for k, v in value.items())
        if isinstance(value, list):
            out: list[tuple[str, str | None]] = []
            for i, item in enumerate(value):
                if isinstance(item, dict | list) or item is None:
                    self.issues.add(
                        line_of(value, i, self.line(key)),
                        f"{self.where}.{key}[{i}]",
                        f"must be a string like NAME{sep}value",
                    )
                    continue
                text = scalar_text(item)
                name, found, rest = text.partition(sep)
                out.append((name, rest if found else None))
            return tuple(out)
        self.bad(key, f"must be a mapping or a list of NAME{sep}value strings")
        return ()

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self.node.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.bad(key, "must be a mapping")
            return {}
        return value


_OPERATORS = ";&|<>"
_SPACE = " \t\r\n"


class ShellOperator(ValueError):
    """A command string holds a shell operator where compose-go stops reading it."""

    def __init__(self, operator: str) -> None:
        super().__init__(operator)
        self.operator = operator


def shell_words(line: str) -> tuple[str, ...]:
    """Split a command string exactly like compose-go (``go-shellwords`` ``Parse``).

    Quotes, backslashes, backticks and ``$(...)`` group as there. Where go-shellwords
    meets an unquoted ``; & | < >`` it silently drops the rest of the line, so
    ``trap "exit 0" TERM; sleep 1`` runs as ``trap 'exit 0' TERM``; this raises
    :class:`ShellOperator` instead (the file must say what it means). Other malformed
    strings (open quotes, a bare ``(``) raise ``ValueError`` as compose-go refuses them.
    """
    args: list[str] = []
    buf: list[str] = []
    escaped = double = single = backquote = dollar = got = False
    for i, c in enumerate(line):
        if escaped:
            buf.append(c)
            escaped = False
            continue
        if c == "\\":
            if single:
                buf.append(c)
            else:
                escaped = True
            continue
        if c in _SPACE:
            if single or double or backquote or dollar:
                buf.append(c)
            elif got:
                args.append("".join(buf))
                buf, got = [], False
            continue
        if c == "`" and not (single or double or dollar):
            backquote = not backquote
        elif c == ")" and not (single or double or backquote):
            dollar = not dollar
        elif c == "(" and not (single or double or backquote):
            if dollar or not buf or buf[-1] != "$":
                raise ValueError("invalid command line string")
            dollar = True
        elif c == '"' and not (single or dollar):
            got = got or (double and not buf)
            double = not double
            continue
        elif c == "'" and not (double or dollar):
            got = got or (single and not buf)
            single = not single
            continue
        elif c in _OPERATORS and not (single or double or backquote or dollar):
            end = i
            while end < len(line) and line[end] in _OPERATORS:
                end += 1
            raise ShellOperator(line[i:end])
        got = True
        buf.append(c)
    if escaped or single or double or backquote or dollar:
        raise ValueError("invalid command line string")
    if got:
        args.append("".join(buf))
    return tuple(args)
