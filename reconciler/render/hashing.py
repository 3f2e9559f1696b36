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


def field_json(name: str, value: Any) -> str:
    """Canonical JSON of one field value (``name`` is the field; see :class:`HashMemo`)."""
    del name  # the text depends on the value only; the name keeps memo keys per field
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


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


def short_hash(text: str) -> str:
    """First 8 hex of the SHA-256 of a field's canonical JSON."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]


MEMO_SIZE = 200_000
"""Entries a :class:`HashMemo` table holds before it is cleared (values repeat across a fleet)."""


class HashMemo:
    """Field JSON and short hashes already computed, keyed by content (never by identity).

    Owned by a :class:`reconciler.render.cache.RenderCache`; each table is cleared
    when it reaches :data:`MEMO_SIZE` entries.
    """

    __slots__ = ("_json", "_short")

    def __init__(self) -> None:
        self._json: dict[tuple[str, Any], str] = {}
        self._short: dict[str, str] = {}

    def field_json(self, name: str, value: Any) -> str:
        """:func:`field_json`, memoized by (field, value)."""
        key = (name, value)
        hit = self._json.get(key)
        if hit is None:
            hit = field_json(name, value)
            if len(self._json) >= MEMO_SIZE:
                self._json.clear()
            self._json[key] = hit
        return hit

    def short_hash(self, text: str) -> str:
        """:func:`short_hash`, memoized by text."""
        hit = self._short.get(text)
        if hit is None:
            hit = short_hash(text)
            if len(self._short) >= MEMO_SIZE:
                self._short.clear()
            self._short[text] = hit
        return hit


def spec_hashes(spec: ServiceSpec) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``(config_hash, field_hashes)`` of a service (see module doc)."""
    return hashes_from_texts(field_texts(spec))
