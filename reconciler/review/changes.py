"""The field-level reasons of a changed service or stack (pure; see :mod:`.impact`).

Values are shown only when safe: environment and labels by key, secret mounts by
device path, config files by repository path and digest, the rest without URL
credentials or the values of secret-named variables.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reconciler.model import Mount, PortBinding, ServiceSpec, StackSpec
from reconciler.redaction import redact, secret_values
from reconciler.render.hashing import plain
from reconciler.units import format_duration


@dataclass(frozen=True, slots=True)
class Change:
    """One reason: ``subject: before -> after`` (``None`` side: absent / not shown)."""

    subject: str
    before: str | None = None
    after: str | None = None

    def __str__(self) -> str:
        if self.before is None and self.after is None:
            return self.subject
        return f"{self.subject}: {self.before or '-'} → {self.after or '-'}"


def _port(p: PortBinding) -> str:
    host = f"{p.host_ip}:" if p.host_ip else ""
    published = f"{host}{p.host_port}" if p.host_port is not None else f"{host}(any)"
    return f"{published}->{p.container_port}/{p.protocol}"


def _mount(m: Mount) -> str:
    mode = "ro" if m.read_only else "rw"
    if m.kind == "config":
        return f"config -> {m.target} ({mode})"  # the source is a content-addressed path
    return f"{m.kind} {m.source or '(tmpfs)'} -> {m.target} ({mode})"


def _value(name: str, value: Any) -> str:
    """A compact, human-readable rendering of a non-secret field value."""
    if value is None:
        return "(unset)"
    if name in ("command", "entrypoint"):
        return shlex.join(value)
    if name == "ports":
        return ", ".join(_port(p) for p in value) or "(none)"
    if name in ("stop_grace_period", "health_timeout") and isinstance(value, int | float):
        return format_duration(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = json.dumps(plain(value), sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 120 else text[:117] + "..."


def _keyed(
    subject: str, before: Iterable[tuple[str, str]], after: Iterable[tuple[str, str]]
) -> Change | None:
    """Keys added / removed / changed of a name-value list; values are never shown."""
    old, new = dict(before), dict(after)
    parts = [f"+{k}" for k in sorted(new.keys() - old.keys())]
    parts += [f"-{k}" for k in sorted(old.keys() - new.keys())]
    parts += [f"~{k}" for k in sorted(old.keys() & new.keys()) if old[k] != new[k]]
    return Change(f"{subject} {', '.join(parts)}") if parts else None


def _mounts(before: tuple[Mount, ...], after: tuple[Mount, ...]) -> list[Change]:
    old = {m.target: m for m in before}
    new = {m.target: m for m in after}
    out = [Change(f"mount {t}", None, _mount(new[t])) for t in sorted(new.keys() - old.keys())]
    out += [Change(f"mount {t}", _mount(old[t]), None) for t in sorted(old.keys() - new.keys())]
    for target in sorted(old.keys() & new.keys()):
        a, b = old[target], new[target]
        if a == b:
            continue
        if a.kind == b.kind == "config" and a.read_only == b.read_only:
            out.append(Change(f"mount {target}: config content changed"))
        else:
            out.append(Change(f"mount {target}", _mount(a), _mount(b)))
    return out


# ------------------------------------------------------------------- comparing


def service_changes(old: ServiceSpec, new: ServiceSpec) -> tuple[Change, ...]:
    old_hashes, new_hashes = dict(old.field_hashes), dict(new.field_hashes)
    fields = [f for f, h in new.field_hashes if old_hashes.get(f) != h]
    fields += [f for f in old_hashes if f not in new_hashes]
    out: list[Change] = []
    for name in fields:
        before, after = getattr(old, name), getattr(new, name)
        if name == "environment":
            change = _keyed("environment", before, after)
            out += [change] if change else []
        elif name == "labels":
            change = _keyed("labels", before, after)
            out += [change] if change else []
        elif name == "mounts":
            out += _mounts(before, after)
        else:
            out.append(Change(name, _value(name, before), _value(name, after)))
    for name in ("pull_policy", "depends_on"):  # not in the config hash: how, not what
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            out.append(Change(name, _value(name, before), _value(name, after)))
    hidden = secret_values(old.environment + new.environment)
    return tuple(_redacted(change, hidden) for change in out)


def _redacted(change: Change, hidden: frozenset[str]) -> Change:
    """``change`` without URL credentials nor secret values (a command may quote them)."""
    before = None if change.before is None else redact(change.before, hidden)
    after = None if change.after is None else redact(change.after, hidden)
    return Change(change.subject, before, after)


def stack_changes(old: StackSpec, new: StackSpec) -> list[Change]:
    out: list[Change] = []
    old_cfg = {c.repo_path: c.digest for c in old.config_files}
    new_cfg = {c.repo_path: c.digest for c in new.config_files}
    for path in sorted(old_cfg.keys() | new_cfg.keys()):
        a, b = old_cfg.get(path), new_cfg.get(path)
        if a != b:
            out.append(Change(f"config {path}", short_digest(a), short_digest(b)))
    for label, a_items, b_items in (
        ("network", {n.name: n for n in old.networks}, {n.name: n for n in new.networks}),
        ("volume", {v.name: v for v in old.volumes}, {v.name: v for v in new.volumes}),
    ):
        for name in sorted(a_items.keys() | b_items.keys()):
            a_val, b_val = a_items.get(name), b_items.get(name)
            if a_val == b_val:
                continue
            if a_val is None or b_val is None:
                out.append(Change(f"{label} {name}", present(a_val), present(b_val)))
            else:
                out.append(Change(f"{label} {name}: settings changed"))
    for directory in sorted(set(new.data_dirs) - set(old.data_dirs)):
        out.append(Change(f"data dir {directory}", None, "created"))
    for name in ("health_timeout", "update_strategy"):
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            out.append(Change(name, _value(name, before), _value(name, after)))
    return out


def short_digest(digest: str | None) -> str | None:
    """``sha256:1a2b3c4d5e6f`` (12 hex digits are plenty to tell two versions apart)."""
    if digest is None:
        return None
    algo, _, hexdigest = digest.partition(":")
    return f"{algo}:{hexdigest[:12]}"


def present(value: object) -> str | None:
    return None if value is None else "present"
