"""JSON Schema checks of manifests, explained as one-line ``path:line`` findings.

The schemas (``reconciler/schemas/*.schema.json``, draft 2020-12) are the contract
editors see through ``# yaml-language-server: $schema=...``; this module compiles each
once per process and turns jsonschema's errors into what a person editing YAML needs:
the line of the offending key or value, the allowed values, a "did you mean" for a
misspelt key, and for Compose keys fleetgate deliberately does not implement, *what to
do instead* (``build`` -> build in CI). Value errors never echo more than 60 characters
of the value.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from reconciler.errors import Finding
from reconciler.manifests.yamlio import LineDict, LineList, control_problem, line_at

if TYPE_CHECKING:  # jsonschema is imported when a document is first validated (below)
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SCHEMA_KINDS = ("fleet", "device", "group", "stack", "compose", "wave")

# Keys of the Compose specification fleetgate refuses, with what to do instead.
_UNSUPPORTED_SERVICE = {
    "build": "build the image in CI and reference it by tag",
    "develop": "it drives a local development loop; remove it",
    "extends": "copy the settings into the service",
    "scale": "define one service per container",
    "external_links": "attach to a shared network instead",
    "volumes_from": "mount the same named volume in both services",
    "sysctls": "remove it",
    "ipc": "remove it",
    "runtime": "remove it; route accelerators with gpus or deploy.resources",
}
_UNSUPPORTED_DEPLOY = {
    "replicas": "each service is one container on each device; remove it",
    "mode": "each service is one container on each device; remove it",
    "update_config": "set updateStrategy in stack.yaml instead",
    "rollback_config": "fleetgate rolls back to the last good revision by itself; remove it",
}
_UNSUPPORTED_TOP = {
    "include": "copy the included services into this compose file",
}
_TYPE_NAMES = {
    "string": "a string",
    "array": "a list",
    "object": "a mapping",
    "boolean": "true or false",
    "integer": "an integer",
    "number": "a number",
    "null": "empty",
}


@cache
def validator(kind: str) -> Draft202012Validator:
    """The compiled validator of one manifest kind, built once per process.

    The shipped schemas share definitions through local ``$ref``s (editors need them);
    the validator gets a copy with every ``$ref`` inlined, which halves validation time
    (no reference resolution per instance: 10,000 devices are validated per run).
    jsonschema is imported here, not at module load: an agent whose revision does not
    change never needs it. The schemas themselves are checked against the metaschema
    by the tests (tests/test_manifests.py), not on every run (0.11 s per process).
    """
    from jsonschema import Draft202012Validator  # noqa: PLC0415  # lazy: see above

    text = resources.files("reconciler.schemas").joinpath(f"{kind}.schema.json").read_text()
    schema = json.loads(text)
    body = {k: v for k, v in schema.items() if k != "$defs"}
    return Draft202012Validator(_inline(body, schema))


def _inline(node: Any, root: Mapping[str, Any]) -> Any:
    """``node`` with each local ``$ref`` replaced by its target (the schemas are acyclic)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = root
            for part in str(node["$ref"]).removeprefix("#/").split("/"):
                target = target[part]
            rest = {k: _inline(v, root) for k, v in node.items() if k != "$ref"}
            return {**_inline(target, root), **rest}
        return {k: _inline(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(item, root) for item in node]
    return node


def schema_findings(kind: str, document: Any, path: str) -> list[Finding]:
    """Every schema violation of ``document`` as ``path:line`` findings, one line each."""
    out: list[Finding] = []
    for error in validator(kind).iter_errors(document):
        out.extend(_explain(kind, error, document, path))
    return out


_SERVICE_FREE_TEXT = frozenset({"environment", "command", "entrypoint", "healthcheck"})


def _free_text(at: Sequence[str | int], key: str | int) -> bool:
    """Whether ``key`` under ``at`` holds program input rather than names.

    A service's environment, command, entrypoint and healthcheck, a config's inline
    ``content``, the ``variables`` of a manifest and ``x-`` extensions: a tab or a newline
    may be meant there (the loader still refuses NUL, and output escapes the rest).
    """
    if not isinstance(key, str):
        return False
    if key.startswith("x-") and len(at) in (0, 2):
        return True
    if not at:
        return key == "variables"
    if len(at) == 2 and at[0] == "services":
        return key in _SERVICE_FREE_TEXT
    return len(at) == 2 and at[0] == "configs" and key == "content"


def control_findings(document: Any, path: str) -> list[Finding]:
    """Every id, name, image, label or other value that is not free text (see
    :func:`_free_text`) holding a control character, at its line.

    Keys are checked by the loader. An ``environment`` list item's name (before ``=``)
    is a name too.
    """
    out: list[Finding] = []
    _walk_controls(document, [], path, out)
    return out


def _walk_controls(node: Any, at: list[str | int], path: str, out: list[Finding]) -> None:
    children: list[tuple[str | int, Any, int | None]] = []
    if isinstance(node, LineDict):
        children = [(key, value, node.line_of(key)) for key, value in node.items()]
    elif isinstance(node, LineList):
        children = [(index, value, node.line_of(index)) for index, value in enumerate(node)]
    for key, value, line in children:
        here = [*at, key]
        if _free_text(at, key):
            if key == "environment" and isinstance(value, LineList):
                for index, item in enumerate(value):
                    name = item.partition("=")[0] if isinstance(item, str) else ""
                    problem = control_problem(name, f"{_dotted([*here, index])} (the name)")
                    if problem is not None:
                        out.append(Finding(path, value.line_of(index), problem))
        elif isinstance(value, str):
            problem = control_problem(value, _dotted(here))
            if problem is not None:
                out.append(Finding(path, line, problem))
        else:
            _walk_controls(value, here, path, out)


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _dotted(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unknown_key(kind: str, parents: Sequence[str | int], key: str, known: list[str]) -> str:
    if kind == "compose":
        depth = len(parents)
        table = (
            _UNSUPPORTED_TOP
            if depth == 0
            else _UNSUPPORTED_SERVICE
            if depth == 2 and parents[0] == "services"
            else _UNSUPPORTED_DEPLOY
            if depth == 3 and parents[2] == "deploy"
            else {}
        )
        if key in table:
            return f"`{key}` is not supported by fleetgate: {table[key]}"
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    where = f" in {_dotted(parents)}" if parents else ""
    return f"unknown key {key!r}{where}; remove it (see schemas/{kind}.schema.json)"


def _explain(kind: str, error: ValidationError, document: Any, path: str) -> list[Finding]:
    at = list(error.absolute_path)
    line = line_at(document, at)
    name = _dotted(at) or "the file"
    instance, rule = error.instance, error.validator
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    if rule == "additionalProperties" and isinstance(instance, Mapping):
        props = list(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        out = []
        for key in instance:
            if key in props or any(re.search(p, str(key)) for p in patterns):
                continue
            key_line = instance.line_of(key) if isinstance(instance, LineDict) else line
            out.append(Finding(path, key_line, _unknown_key(kind, at, str(key), props)))
        return out
    if "propertyNames" in error.relative_schema_path:
        key_line = line
        parent = _resolve(document, at)
        if isinstance(parent, LineDict) and isinstance(instance, str):
            key_line = parent.line_of(instance)
        hint = schema.get("patternErrorMessage", f"a name matching {schema.get('pattern')}")
        return [Finding(path, key_line, f"name {_show(instance)} in {name} must be {hint}")]
    if rule == "anyOf":
        # The alternative of the value's own type says best what is wrong (a string
        # that is not a number of CPUs, a number out of range).
        specific = [e for e in error.context or () if e.validator != "type"]
        if specific:
            return _explain(kind, specific[0], document, path)
        kinds = [
            e.validator_value for e in error.context or () if isinstance(e.validator_value, str)
        ]
        if kinds:
            wanted = " or ".join(_TYPE_NAMES.get(k, k) for k in kinds)
            got = _TYPE_NAMES.get(_json_type(instance), "something else")
            return [Finding(path, line, f"{name} must be {wanted}, not {got}")]
    if rule == "type":
        types: Any = error.validator_value
        names = [_TYPE_NAMES[t] for t in ([types] if isinstance(types, str) else types)]
        wanted = names[-1] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        got = _TYPE_NAMES.get(_json_type(instance), "something else")
        return [Finding(path, line, f"{name} must be {wanted}, not {got}")]
    if rule == "enum":
        values: Any = error.validator_value
        options = ", ".join(str(v) for v in values)
        return [Finding(path, line, f"{name} {_show(instance)} is not one of {options}")]
    if rule == "pattern":
        hint = schema.get("patternErrorMessage", f"matching {error.validator_value}")
        return [Finding(path, line, f"{name} {_show(instance)} is not {hint}")]
    if rule == "required" and isinstance(instance, Mapping):
        required: Any = error.validator_value
        missing = [k for k in required if k not in instance]
        what = "the file" if not at else name
        return [Finding(path, line, f"{what} is missing required key {k!r}") for k in missing]
    if rule in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = error.validator_value
        side = "at least" if "inimum" in rule else "at most"
        return [Finding(path, line, f"{name} {_show(instance)} must be {side} {bound}")]
    if rule in ("minItems", "minProperties", "minLength"):
        return [Finding(path, line, f"{name} must not be empty")]
    if rule == "uniqueItems":
        return [Finding(path, line, f"{name} lists the same value twice; keep one")]
    return [Finding(path, line, f"{name}: {error.message[:120]}")]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _resolve(document: Any, at: Sequence[str | int]) -> Any:
    node = document
    for part in at:
        node = node[part]
    return node
