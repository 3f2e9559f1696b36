"""Compose variable interpolation, with the exact rules of compose-go.

Supported forms, as ``docker compose`` evaluates them:

- ``$$`` is a literal ``$``;
- ``$VAR`` and ``${VAR}`` (names ``[_A-Za-z][_A-Za-z0-9]*``) are the value, or ``""`` when unset;
- ``${VAR:-default}`` when unset *or empty*, ``${VAR-default}`` when unset;
- ``${VAR:+alt}`` when set and non-empty, ``${VAR+alt}`` when set;
- ``${VAR:?msg}`` fails when unset or empty, ``${VAR?msg}`` when unset;
- the operand (default, alternative, message) is itself interpolated, *eagerly*: compose-go
  evaluates it before looking at the variable, so ``${SET:-${X:?boom}}`` fails too;
- where a braced expression ends follows compose-go's algorithm literally: a greedy
  regex match up to the last ``}`` on the line, cut at the first balanced ``}`` (each
  ``{`` opens and skips the next character), the remainder interpolated after it. So
  ``${A:-{x}}`` is ``{x}``, ``${UNSET:-{a}b}c}`` is ``{a}bc}``, an operand never spans a
  newline, and the *first* error from the left is the one reported.

A ``$`` followed by anything else (``$ ``, ``$-``, ``$1``, a trailing ``$``) stays a
literal ``$`` exactly as compose-go keeps it (``docker compose config`` shows it
unchanged); ``${`` that does not form a valid expression is an error.

Templates are parsed once into a tiny syntax tree (cached), so a fleet of thousands of
devices sharing a stack pays the parse cost once and :func:`referenced_variables` is
a walk of the same tree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from reconciler.errors import Severity
from reconciler.manifests.yamlio import LineDict, LineList

Operator = Literal["", ":-", "-", ":+", "+", ":?", "?"]

_NAME = re.compile(r"[_a-z][_a-z0-9]*", re.IGNORECASE | re.ASCII)
# compose-go's braced alternative ``{(?:(?P<braced>...)}|(?P<invalid>))``: greedy ``.*``
# that (as in Go) does not cross a newline.
_BRACE_MATCH = re.compile(r"\{(?:([_a-z][_a-z0-9]*(?::?[-+?].*)?)\}|)", re.IGNORECASE | re.ASCII)


@dataclass(frozen=True, slots=True)
class Var:
    """One ``$NAME`` / ``${NAME<op><operand>}`` reference."""

    name: str
    op: Operator = ""
    operand: Template = ()


@dataclass(frozen=True, slots=True)
class Bad:
    """A ``${`` that forms no valid expression; evaluating up to it raises."""

    text: str


Template = tuple["str | Var | Bad", ...]


class InvalidTemplate(Exception):
    """A ``${`` that does not form a valid expression."""


class RequiredVariable(Exception):
    """``${VAR:?msg}`` / ``${VAR?msg}`` met an unset (or empty) variable."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(variable, message)
        self.variable = variable
        self.message = message


@dataclass(frozen=True, slots=True)
class InterpolationProblem:
    """An error met while interpolating one value of a document.

    ``variable`` is set for a required variable (``:?``/``?``), ``None`` for a malformed
    template. ``detail`` is the user's message or the offending template. A ``warning``
    is an unset plain ``$X`` that Compose would replace by an empty string with a warning
    (an error instead where it would empty a required field, see ``_CRITICAL``).
    """

    line: int | None
    key_path: str  # e.g. "services.plc.environment.ADDRESS"
    variable: str | None
    detail: str
    severity: Severity = "error"


def _first_closing(text: str) -> int:
    """compose-go's ``getFirstBraceClosingIndex``: each ``{`` opens and skips a byte."""
    depth = 0
    i = 0
    while i < len(text):
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        if text[i] == "{":
            depth += 1
            i += 1
        i += 1
    return -1


_OPERATORS: tuple[Operator, ...] = (":?", "?", ":-", "-", ":+", "+")


def _operator(match_text: str) -> Operator:
    """The operator compose-go applies: the one occurring first in the matched text."""
    found = [(match_text.find(op), op) for op in _OPERATORS if op in match_text]
    return min(found)[1] if found else ""


def _braced(text: str, start: int) -> tuple[list[str | Var | Bad], int]:
    """Parts for the ``${`` at ``start`` and the index after the whole regex match."""
    m = _BRACE_MATCH.match(text, start + 1)
    if m is None or m.group(1) is None:
        return [Bad(text)], len(text)
    end = m.end()
    whole = text[start:end]
    close = _first_closing(whole)
    sub, rest = (whole[: close + 1], whole[close + 1 :]) if close > -1 else (whole, "")
    inner = _BRACE_MATCH.match(sub, 1)
    if inner is None or inner.group(1) is None:
        return [Bad(text)], len(text)
    substitution = inner.group(1)
    op = _operator(whole)
    if not op or op not in substitution:
        return [Var(substitution)], end  # no operator applies: a plain lookup, rest dropped
    name, _, operand = substitution.partition(op)
    return [Var(name, op, parse_template(operand)), *parse_template(rest)], end


@lru_cache(maxsize=65536)
def parse_template(text: str) -> Template:
    """Parse a template; a malformed ``${...}`` ends it with a :class:`Bad` part.

    The error is raised only when evaluation reaches it, because compose-go reports the
    *first* error from the left: ``${EMPTY:?}${`` is a required-variable error.
    """
    if "$" not in text:
        return (text,)
    parts: list[str | Var | Bad] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "$":
            literal.append(c)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        if nxt == "$":
            literal.append("$")
            i += 2
            continue
        if nxt == "{":
            if literal:
                parts.append("".join(literal))
                literal = []
            found, i = _braced(text, i)
            parts.extend(found)
            if isinstance(parts[-1], Bad):
                return tuple(parts)
            continue
        m = _NAME.match(text, i + 1)
        if m is None:
            literal.append("$")  # compose-go leaves a lone "$" as it is
            i += 1
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(Var(m.group(0)))
        i = m.end()
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def evaluate(template: Template, variables: Mapping[str, str]) -> str:
    """The value of a parsed template; raise :class:`RequiredVariable` per compose rules."""
    out: list[str] = []
    for part in template:
        if isinstance(part, str):
            out.append(part)
            continue
        if isinstance(part, Bad):
            raise InvalidTemplate(part.text)
        operand = evaluate(part.operand, variables) if part.op else ""
        value = variables.get(part.name)
        op = part.op
        if op == "":
            out.append(value or "")
        elif op == ":-":
            out.append(value if value else operand)
        elif op == "-":
            out.append(operand if value is None else value)
        elif op == ":+":
            out.append(operand if value else "")
        elif op == "+":
            out.append("" if value is None else operand)
        elif op == ":?":
            if not value:
                raise RequiredVariable(part.name, operand)
            out.append(value)
        else:  # "?"
            if value is None:
                raise RequiredVariable(part.name, operand)
            out.append(value)
    return "".join(out)


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """Interpolate one string (raises :class:`InvalidTemplate` / :class:`RequiredVariable`)."""
    return evaluate(parse_template(text), variables)


def _names(template: Template, into: set[str]) -> None:
    for part in template:
        if isinstance(part, Var):
            into.add(part.name)
            _names(part.operand, into)


def _walk_strings(doc: Any, visit: Callable[[str], None]) -> None:
    if isinstance(doc, str):
        visit(doc)
    elif isinstance(doc, dict):
        for value in doc.values():
            _walk_strings(value, visit)
    elif isinstance(doc, list):
        for value in doc:
            _walk_strings(value, visit)


def referenced_variables(doc: Any) -> frozenset[str]:
    """Every variable name any string value of ``doc`` refers to (operands included).

    A malformed template contributes the names before its error (interpolation reports
    the error). Render uses this
    as the cache key of a stack: two devices with equal values for these names get the
    same interpolated document.
    """
    names: set[str] = set()

    def visit(text: str) -> None:
        if "$" in text:
            _names(parse_template(text), names)

    _walk_strings(doc, visit)
    return frozenset(names)


def interpolate_document(
    doc: Any, variables: Mapping[str, str]
) -> tuple[Any, tuple[InterpolationProblem, ...]]:
    """Interpolate every string *value* (never keys) of a parsed YAML document.

    Returns a new document carrying the same line information, plus every problem met
    (a value that fails is kept as its raw text so the walk can go on and report all
    problems at once). See :class:`CompiledDocument` to interpolate one document often.
    """
    return CompiledDocument(doc).interpolate(variables)


# Values an unset variable must not leave broken (``n8n:${TAG}`` as ``n8n:``): an
# image, a port, a mount, a device, an env file, a container name. ``${X-}`` says
# "empty on purpose"; elsewhere an unset ``$X`` is empty with a warning, as in Compose.
_CRITICAL = re.compile(
    r"services\.[^.]+\.(?:image|container_name|platform"
    r"|ports\[\d+\](?:\.(?:published|target|host_ip))?"
    r"|volumes\[\d+\](?:\.(?:source|target))?|devices\[\d+\]"
    r"|env_file(?:\[\d+\])?(?:\.path)?)"
)


def _plain_unset(template: Template, variables: Mapping[str, str]) -> list[str]:
    """Names used as plain ``$X``/``${X}`` (no default, no check) that are unset."""
    return [
        p.name for p in template if isinstance(p, Var) and p.op == "" and p.name not in variables
    ]


_Plan = tuple[Any, ...]
"""How to interpolate one node holding a ``$``: ``(_TEXT, template, raw, line, path)``,
``(_MAP | _SEQ, node, ((key or index, plan), ...))`` for containers (only the children
holding a ``$`` are listed; the others are copied as they are)."""
_TEXT, _MAP, _SEQ, _DICT, _LIST = range(5)


class CompiledDocument:
    """A parsed document prepared for repeated interpolation (render: once per stack).

    Compiling parses every template once and remembers which mappings and sequences
    hold a ``$`` at all, with each one's key path, so an interpolation only evaluates
    templates and copies those containers (fresh :class:`LineDict`/:class:`LineList`
    with the same lines); every subtree without templates is *shared* with the source
    document. Documents are never mutated after parsing, so sharing is safe.
    """

    def __init__(self, doc: Any) -> None:
        self.doc = doc
        self._plan = self._compile(doc, getattr(doc, "line", None), "")

    def _compile(self, node: Any, line: int | None, path: str) -> _Plan | None:
        if isinstance(node, str):
            return (_TEXT, parse_template(node), node, line, path) if "$" in node else None
        children: list[tuple[Any, _Plan]] = []
        if isinstance(node, dict):
            for key, value in node.items():
                where = f"{path}.{key}" if path else str(key)
                at = node.line_of(key) if isinstance(node, LineDict) else line
                plan = self._compile(value, at, where)
                if plan is not None:
                    children.append((key, plan))
            kind = _MAP if isinstance(node, LineDict) else _DICT
        elif isinstance(node, list):
            for i, value in enumerate(node):
                at = node.line_of(i) if isinstance(node, LineList) else line
                plan = self._compile(value, at, f"{path}[{i}]")
                if plan is not None:
                    children.append((i, plan))
            kind = _SEQ if isinstance(node, LineList) else _LIST
        else:
            return None
        return (kind, node, tuple(children)) if children else None

    def interpolate(
        self, variables: Mapping[str, str]
    ) -> tuple[Any, tuple[InterpolationProblem, ...]]:
        """The interpolated document and every problem met (see module doc)."""
        if self._plan is None:
            return self.doc, ()
        problems: list[InterpolationProblem] = []

        def run(plan: _Plan) -> Any:
            kind = plan[0]
            if kind == _TEXT:
                try:
                    value = evaluate(plan[1], variables)
                    unset = _plain_unset(plan[1], variables)
                    if unset and _CRITICAL.match(plan[4]):
                        problems.append(InterpolationProblem(plan[3], plan[4], unset[0], ""))
                    else:
                        problems.extend(
                            InterpolationProblem(plan[3], plan[4], name, "", "warning")
                            for name in dict.fromkeys(unset)
                        )
                    return value
                except RequiredVariable as e:
                    problems.append(InterpolationProblem(plan[3], plan[4], e.variable, e.message))
                except InvalidTemplate:
                    problems.append(InterpolationProblem(plan[3], plan[4], None, plan[2]))
                return plan[2]
            node = plan[1]
            out: Any
            if kind == _MAP:
                out = LineDict(node)
                out.line = node.line
                out.key_lines = node.key_lines
            elif kind == _SEQ:
                out = LineList(node)
                out.line = node.line
                out.item_lines = node.item_lines
            else:
                out = dict(node) if kind == _DICT else list(node)
            for where, child in plan[2]:
                out[where] = run(child)
            return out

        return run(self._plan), tuple(problems)
