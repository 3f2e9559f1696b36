"""Reading YAML manifests safely, with the line of every key.

The fleet repository is untrusted input (a merge request from anyone with push
rights), so the loader:

- refuses files over :data:`MAX_MANIFEST_BYTES` before reading them;
- refuses documents whose alias-expanded size exceeds :data:`MAX_NODES` before
  constructing them (billion laughs), and recursive aliases;
- refuses duplicate keys (PyYAML would silently keep the last);
- resolves scalars the YAML 1.2 way, like Compose (``yes``/``on`` stay strings,
  ``22:00`` is not the sexagesimal number 1320, dates stay strings);
- constructs only the core types (mapping, sequence, string, integer, float, boolean,
  null): ``!!binary``, ``!!timestamp``, ``!!set``, ``!!python/...`` and unknown tags are
  refused with their line;
- refuses numbers no engine field can take, at their line: NaN and infinities, integers
  outside 64 bits (and integers of thousands of digits, which Python would not even
  convert), so no later stage ever meets one;
- refuses mapping keys that are not text (``null:``, ``true:``, ``5:``): every key of a
  fleetgate manifest is a name;
- refuses NUL in any string (the engine cannot carry it) and every control character
  (:data:`reconciler.errors.CONTROL_CHARS`) in keys, which are always names;
- records the 1-based line of every mapping key and sequence item, so any later
  stage can report ``path:line``.

Mappings come back as :class:`LineDict` and sequences as :class:`LineList`: plain
``dict``/``list`` subclasses, so jsonschema and the rest of the code treat them as
ordinary containers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import yaml

from reconciler.errors import CONTROL_CHARS, Finding, ManifestError, describe_control

MAX_MANIFEST_BYTES = 1024 * 1024
"""Largest manifest read at all; a realistic compose file is a few kilobytes."""

MAX_NODES = 200_000
"""Largest document, counted in YAML nodes after alias expansion."""

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""Every integer field of the Engine API is at most 64 bits wide."""

_MAX_INT_DIGITS = 40
"""Longer integer literals are refused before Python converts them (4,300-digit limit)."""

_CORE = "tag:yaml.org,2002:"
_SPECIAL_FLOAT = re.compile(r"^[-+]?\.(?:inf|nan)$", re.IGNORECASE)


def control_problem(text: str, what: str) -> str | None:
    """``what contains a control character U+001B; remove it``, or ``None`` if clean."""
    bad = CONTROL_CHARS.search(text)
    if bad is None:
        return None
    return f"{what} contains a control character {describe_control(bad.group())}; remove it"


class LineDict(dict[str, Any]):
    """A mapping that remembers its own line and the line of each key."""

    line: int
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list[Any]):
    """A sequence that remembers its own line and the line of each item."""

    line: int
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


class _Loader(_BaseLoader):  # type: ignore[misc]  # PyYAML's loaders are untyped classes
    """Safe loader with YAML 1.2 core scalars, line tracking and duplicate-key checks."""

    # Start from no implicit resolvers (not SafeLoader's YAML 1.1 ones); filled in below.
    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {}

    def construct_yaml_map(self, node: yaml.MappingNode) -> Any:
        data = LineDict()
        data.line = node.start_mark.line + 1
        data.key_lines = {}
        yield data
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, _key_problem(key), key_node.start_mark
                )
            problem = control_problem(key, "key")
            if problem is not None:
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {seen[key]}); keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            data[key] = self.construct_object(value_node, deep=True)
            data.key_lines[key] = key_node.start_mark.line + 1

    def construct_yaml_seq(self, node: yaml.SequenceNode) -> Any:
        data = LineList()
        data.line = node.start_mark.line + 1
        data.item_lines = [child.start_mark.line + 1 for child in node.value]
        yield data
        data.extend(self.construct_object(child, deep=True) for child in node.value)

    def construct_core_str(self, node: yaml.Node) -> str:
        value = self.construct_scalar(node)
        if not isinstance(value, str):
            raise _refuse(node, "a text value must be a plain scalar")
        if "\x00" in value:
            raise _refuse(node, "text contains a NUL character (U+0000); remove it")
        return value

    def construct_core_int(self, node: yaml.Node) -> int:
        text = str(self.construct_scalar(node)).replace("_", "")
        sign, digits = (-1, text[1:]) if text[:1] == "-" else (1, text.removeprefix("+"))
        if len(digits) > _MAX_INT_DIGITS:
            raise _refuse(node, f"integer of {len(digits)} digits is out of range; quote it")
        try:
            if digits[:2] in ("0x", "0X"):
                value = sign * int(digits[2:], 16)
            elif digits[:2] in ("0o", "0O"):
                value = sign * int(digits[2:], 8)
            else:
                value = sign * int(digits, 10)
        except ValueError:
            raise _refuse(node, f"{_short(text)} is not an integer") from None
        if not INT64_MIN <= value <= INT64_MAX:
            raise _refuse(
                node, f"integer {_short(text)} does not fit in 64 bits; use a smaller number"
            )
        return value

    def construct_core_float(self, node: yaml.Node) -> float:
        text = str(self.construct_scalar(node)).replace("_", "")
        try:
            value = float(text.replace(".", "", 1) if _SPECIAL_FLOAT.match(text) else text)
        except ValueError:
            raise _refuse(node, f"{_short(text)} is not a number") from None
        if not math.isfinite(value):
            raise _refuse(
                node,
                f"{_short(text)} is not a finite number (NaN and infinity are refused); "
                "write a number, or quote it if it is text",
            )
        return value

    def construct_core_bool(self, node: yaml.Node) -> bool:
        text = str(self.construct_scalar(node))
        if text.lower() not in ("true", "false"):
            raise _refuse(node, f"{_short(text)} is not true or false")
        return text.lower() == "true"

    def construct_core_null(self, node: yaml.Node) -> None:
        self.construct_scalar(node)

    def construct_refused(self, node: yaml.Node) -> Any:
        tag = node.tag.removeprefix(_CORE)
        raise _refuse(
            node,
            f"the tag !!{tag} is not allowed (only plain YAML values are); remove it"
            if node.tag.startswith(_CORE)
            else f"the tag {_short(node.tag)} is not allowed (only plain YAML values are); "
            "remove it",
        )


def _refuse(node: yaml.Node, problem: str) -> yaml.constructor.ConstructorError:
    return yaml.constructor.ConstructorError(None, None, problem, node.start_mark)


def _short(text: str) -> str:
    """A quoted value for a message, cut to 40 characters."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _key_problem(key: object) -> str:
    if key is None:
        return "a mapping key is empty (null); write a name"
    if isinstance(key, bool | int | float):
        return f"mapping key {key!r} is not a name; quote it if you mean the text"
    return "a mapping key must be a plain name"


# Only the core types: start from an empty table (not SafeLoader's, which builds bytes,
# datetimes and sets), so any other tag lands on construct_refused.
_Loader.yaml_constructors = {}
_Loader.add_constructor(_CORE + "map", _Loader.construct_yaml_map)
_Loader.add_constructor(_CORE + "seq", _Loader.construct_yaml_seq)
_Loader.add_constructor(_CORE + "str", _Loader.construct_core_str)
_Loader.add_constructor(_CORE + "int", _Loader.construct_core_int)
_Loader.add_constructor(_CORE + "float", _Loader.construct_core_float)
_Loader.add_constructor(_CORE + "bool", _Loader.construct_core_bool)
_Loader.add_constructor(_CORE + "null", _Loader.construct_core_null)
_Loader.add_constructor(None, _Loader.construct_refused)

# YAML 1.2 core schema: booleans, null, ints, floats. No sexagesimals, no
# yes/no/on/off booleans, no timestamps (Compose and Kubernetes behave the same).
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])


def _expanded_size(root: yaml.Node) -> int:
    """Count nodes as if every alias were expanded; stop early past MAX_NODES."""
    memo: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        if key in active:
            raise _Refused("a recursive alias refers to itself; remove the anchor loop")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > MAX_NODES:
                    break
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > MAX_NODES:
                    break
        active.discard(key)
        memo[key] = total
        if total > MAX_NODES:
            raise _Refused(
                f"document expands to more than {MAX_NODES} nodes (alias bomb?); "
                "use fewer anchors and aliases"
            )
        return total

    return size(root)


class _Refused(Exception):
    """Internal: the document is hostile or too large."""


def parse_yaml(text: str | bytes, display: str) -> Any:
    """Parse one YAML document; raise :class:`ManifestError` with ``display:line``.

    ``display`` is the repository-relative path used in messages. An empty
    document is ``None``.
    """
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            [Finding(display, None, f"file is larger than {MAX_MANIFEST_BYTES} bytes; split it")]
        )
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _Refused as e:
        raise ManifestError([Finding(display, None, str(e))]) from None
    except yaml.reader.ReaderError as e:
        raise ManifestError([_reader_finding(e, text, display)]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = e.problem or e.context or "invalid YAML"
        if mark is not None and _starts_with_tab(text, mark.line):
            problem = "a tab indents this line; YAML indents with spaces only"
        raise ManifestError([Finding(display, line, f"YAML: {problem}")]) from None
    except yaml.YAMLError as e:
        raise ManifestError([Finding(display, None, f"YAML: {e}")]) from None
    except RecursionError:
        raise ManifestError(
            [Finding(display, None, "YAML nesting is too deep; flatten the document")]
        ) from None
    finally:
        loader.dispose()


def _starts_with_tab(text: str | bytes, index: int) -> bool:
    lines = (
        text.splitlines() if isinstance(text, str) else text.decode("utf-8", "replace").splitlines()
    )
    if not 0 <= index < len(lines):
        return False
    line = lines[index]
    return "\t" in line[: len(line) - len(line.lstrip(" \t"))]


def _reader_finding(error: yaml.reader.ReaderError, text: str | bytes, display: str) -> Finding:
    """A character the YAML reader refused, at its line, as one line (not PyYAML's two)."""
    before = text[: max(error.position, 0)]
    line = (before.count(b"\n") if isinstance(before, bytes) else before.count("\n")) + 1
    code = error.character if isinstance(error.character, int) else 0
    if "control" in error.reason or "special" in error.reason:
        message = (
            f"contains a control character U+{code:04X}; remove it "
            "(write it as an escape in a double-quoted string if it is meant)"
        )
    else:
        message = f"is not valid UTF-8 text (byte 0x{code:02x}); save it as UTF-8"
    return Finding(display, line, message)


def load_yaml(path: Path, display: str) -> Any:
    """Read and parse a manifest file, refusing oversized files before reading them."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ManifestError([Finding(display, None, f"cannot read: {e.strerror}")]) from None
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(
            [Finding(display, None, f"file is larger than {MAX_MANIFEST_BYTES} bytes; split it")]
        )
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ManifestError([Finding(display, None, f"cannot read: {e.strerror}")]) from None
    return parse_yaml(data, display)


def line_at(document: Any, path: Sequence[str | int]) -> int | None:
    """The line of the deepest node on ``path`` that has one (for schema errors)."""
    line: int | None = getattr(document, "line", None)
    node = document
    for part in path:
        # Two branches, not one `or`: mypy narrows the index type per container kind.
        if isinstance(node, LineDict) and isinstance(part, str) and part in node:  # noqa: SIM114
            line = node.line_of(part)
            node = node[part]
        elif isinstance(node, LineList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.line_of(part)
            node = node[part]
        else:
            break
    return line
