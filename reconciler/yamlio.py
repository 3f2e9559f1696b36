"""Reading YAML manifests safely, with the line of every key.

The fleet repository is untrusted input (a merge request from anyone with push
rights), so the loader:

- refuses files over :data:`MAX_MANIFEST_BYTES` before reading them;
- refuses documents whose alias-expanded size exceeds :data:`MAX_NODES` before
  constructing them (billion laughs), and recursive aliases;
- refuses duplicate keys (PyYAML would silently keep the last);
- resolves scalars the YAML 1.2 way, like Compose (``yes``/``on`` stay strings,
  ``22:00`` is not the sexagesimal number 1320, dates stay strings);
- records the 1-based line of every mapping key and sequence item, so any later
  stage can report ``path:line``.

Mappings come back as :class:`LineDict` and sequences as :class:`LineList`: plain
``dict``/``list`` subclasses, so jsonschema and the rest of the code treat them as
ordinary containers.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import yaml

from reconciler.errors import Finding, ManifestError

MAX_MANIFEST_BYTES = 1024 * 1024
"""Largest manifest read at all; a realistic compose file is a few kilobytes."""

MAX_NODES = 200_000
"""Largest document, counted in YAML nodes after alias expansion."""

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
        seen: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain scalar", key_node.start_mark
                )
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


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_yaml_seq)

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
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = e.problem or e.context or "invalid YAML"
        raise ManifestError([Finding(display, line, f"YAML: {problem}")]) from None
    except yaml.YAMLError as e:
        raise ManifestError([Finding(display, None, f"YAML: {e}")]) from None
    except RecursionError:
        raise ManifestError(
            [Finding(display, None, "YAML nesting is too deep; flatten the document")]
        ) from None
    finally:
        loader.dispose()


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
