"""Config hashes of a rendered service: the "recreate or keep" decision, as data.

``config_hash`` is the SHA-256 hex of the canonical JSON (sorted keys, no spaces,
tuples as lists, dataclasses as objects, whole floats as integers) of every
:class:`ServiceSpec` field except the identity (``device``, ``stack``, ``service``),
``pull_policy`` and ``depends_on`` (they change *how* the reconciler acts, not the
container) and the hashes themselves.
Fields added after the first release (:data:`SPARSE`) enter the canonical JSON only
when they differ from their default, so upgrading fleetgate does not change the hash
of (and recreate) a container that does not use them.

``field_hashes`` is ``((field, first 8 hex of sha256(canonical JSON of the value)), ...)``
in field-declaration order, so a plan can say *which* field changed without storing any
value (values may be secrets).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from typing import Any

from reconciler.model import ServiceSpec

UNHASHED = frozenset(
    {"device", "stack", "service", "pull_policy", "depends_on", "config_hash", "field_hashes"}
)
HASHED_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(ServiceSpec) if f.name not in UNHASHED
)


def plain(value: Any) -> Any:
    """A JSON-ready copy: dataclasses become dicts (by field), tuples lists.

    A whole float is written as an integer (``90.0`` -> ``90``) so that equal numbers
    hash equally whatever their Python type (``1 == 1.0`` must not change a hash).
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    raise TypeError(f"cannot hash {type(value).__name__}")


_memo: dict[tuple[str, Any], str] = {}
_MEMO_SIZE = 200_000
"""Bounded memos of pure results (values repeat across a fleet); cleared when full."""


def field_json(name: str, value: Any) -> str:
    """Canonical JSON of one field value, memoized by (field, value)."""
    key = (name, value)
    hit = _memo.get(key)
    if hit is None:
        hit = json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if len(_memo) >= _MEMO_SIZE:
            _memo.clear()
        _memo[key] = hit
    return hit


SPARSE_FIELDS = (
    *("expose", "tty", "stdin_open", "dns", "dns_search", "security_opt", "pid", "group_add"),
)
_DEFAULT_TEXT = {
    f.name: json.dumps(plain(f.default), sort_keys=True, separators=(",", ":"))
    for f in fields(ServiceSpec)
    if f.name in SPARSE_FIELDS
}
_SORTED = tuple(sorted(HASHED_FIELDS))
_KEYS = {name: json.dumps(name) for name in HASHED_FIELDS}


def field_texts(spec: ServiceSpec) -> dict[str, str]:
    """Canonical JSON text of every hashed field of ``spec``."""
    return {name: field_json(name, getattr(spec, name)) for name in HASHED_FIELDS}


_ORDER = tuple(HASHED_FIELDS.index(name) for name in _SORTED)
_PREFIXES = tuple(f"{_KEYS[name]}:" for name in _SORTED)
_DEFAULTS = tuple(_DEFAULT_TEXT.get(name) for name in _SORTED)  # None: always written


def whole_json(texts: Sequence[str]) -> str:
    """The canonical JSON of the hashed fields from per-field texts (``HASHED_FIELDS`` order).

    Joining the per-field texts in sorted key order is byte-for-byte what
    ``json.dumps(..., sort_keys=True)`` of the dict gives.
    """
    return (
        "{"
        + ",".join(
            [
                p + texts[i]
                for p, i, default in zip(_PREFIXES, _ORDER, _DEFAULTS, strict=True)
                if texts[i] != default
            ]
        )
        + "}"
    )


def hashes_from_texts(texts: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``(config_hash, field_hashes)`` from per-field canonical JSON texts."""
    digest = hashlib.sha256(whole_json([texts[n] for n in HASHED_FIELDS]).encode()).hexdigest()
    return digest, tuple((name, short_hash(texts[name])) for name in HASHED_FIELDS)


_short_memo: dict[str, str] = {}


def short_hash(text: str) -> str:
    """First 8 hex of the SHA-256 of a field's canonical JSON (memoized)."""
    hit = _short_memo.get(text)
    if hit is not None:
        return hit
    value = hashlib.sha256(text.encode()).hexdigest()[:8]
    if len(_short_memo) >= _MEMO_SIZE:
        _short_memo.clear()
    _short_memo[text] = value
    return value


def spec_hashes(spec: ServiceSpec) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``(config_hash, field_hashes)`` of a service (see module doc)."""
    return hashes_from_texts(field_texts(spec))
