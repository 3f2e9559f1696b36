"""Compose ``volumes``, ``configs``, ``secrets`` and ``tmpfs`` to :class:`Mount` values.

Sources are classified as DESIGN §1 "Paths" says:

- a relative source that exists in the repository is a ``config``: materialized at
  ``{state}/configs/{device}/{stack}/{first 16 hex of its digest}/{basename}``, mounted
  read-only unless the file says ``:rw`` / ``read_only: false``;
- a relative source that does not exist is ``data``: ``{state}/data/{device}/{stack}/{path}``
  (it must stay inside the stack directory: data of one stack is not another's); when
  its name has a file extension (``./acme.json``) it is most likely a file that was not
  committed: a warning says so, and it is still an (empty) data directory, as Compose
  would create a directory there;
- a repository path listed under stack.yaml ``seed:`` is ``data`` at the same place,
  seeded: its files are copied there only where absent (a warning suggests it for a
  repository path mounted ``:rw``, whose writes a per-revision copy would lose);
- the stack's ``FLEETGATE_LOCK_DIR`` (or a path below it) is ``lock``;
- any other absolute source is ``host``; a named source is a ``volume``.

Anonymous volumes (``- /data`` alone) are refused: Compose would create a nameless
volume that a rollback cannot find again, breaking "data survives updates".
Compose's non-Swarm file-based ``configs``/``secrets`` are bind mounts, read-only;
secrets must be absolute device paths (never plaintext in the repository).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.manifests.tree import TreeEscape
from reconciler.model import ConfigFile, Mount
from reconciler.render.compose.context import Issues, StackContext, is_true, line_of, scalar_text
from reconciler.render.compose.seeding import looks_like_file, seed
from reconciler.units import parse_bytes

_MODES = {"ro", "rw", "cached", "delegated", "consistent"}  # the last three: macOS only
# Suffixes Compose honours that fleetgate cannot carry (a bind is source:target:ro|rw):
# refused by name instead of dropped, with what to do.
_REFUSED_MODES = {
    "z": "SELinux relabelling of a shared bind source; fleetgate's config and data "
    "directories are its own: remove it, or label the host path once on the device",
    "Z": "SELinux private relabelling; remove it, or label the host path once on the device",
    "nocopy": "named volumes are filled from the image once; remove it or use a bind",
    **dict.fromkeys(
        ("shared", "rshared", "slave", "rslave", "private", "rprivate"),
        "mount propagation is not supported by fleetgate; remove it",
    ),
}


@dataclass(slots=True)
class MountAccumulator:
    """Mounts of one service plus what the stack must prepare for them."""

    mounts: list[Mount] = field(default_factory=list)
    config_files: dict[str, ConfigFile] = field(default_factory=dict)  # by host path
    data_dirs: dict[str, None] = field(default_factory=dict)
    volumes: dict[str, None] = field(default_factory=dict)  # compose keys used


def volume_name(key: str, declared: Mapping[str, Any], prefix: str) -> str:
    """Final engine name of a top-level volume/network (``name:`` or external as is)."""
    spec = declared.get(key) or {}
    if isinstance(spec, dict):
        if spec.get("name"):
            return scalar_text(spec["name"])
        legacy = spec.get("external")
        if isinstance(legacy, dict) and legacy.get("name"):
            return scalar_text(legacy["name"])  # the legacy `external: {name: x}`
        if is_external(spec):
            return key
    return prefix + key


def is_external(spec: Any) -> bool:
    """``external: true``, or the legacy ``external: {name: x}`` (external too)."""
    if not isinstance(spec, dict):
        return False
    value = spec.get("external")
    return is_true(value) or isinstance(value, dict)


@dataclass(slots=True)
class MountReader:
    """Reads the mount keys of one service into ``acc``, reporting into ``issues``."""

    ctx: StackContext
    issues: Issues
    acc: MountAccumulator
    top: Mapping[str, Any]  # the whole compose document (top-level volumes/configs/secrets)
    tmpfs: list[tuple[str, str]] = field(default_factory=list)  # long tmpfs with options

    def _declared(self, key: str) -> Mapping[str, Any]:
        value = self.top.get(key)
        return value if isinstance(value, dict) else {}

    def _config_source(self, repo_rel: str, line: int | None, where: str) -> str | None:
        """Materialization path of a repository file/dir; registers its ConfigFile entries."""
        ctx, tree = self.ctx, self.ctx.tree
        try:
            digest = tree.digest(repo_rel)
            is_dir = tree.kind(repo_rel) == "dir"
            base = posixpath.basename(repo_rel) or ctx.stack
            short = digest.split(":", 1)[1][:16]
            host = posixpath.join(ctx.state_dir, "configs", ctx.device, ctx.stack, short, base)
            files = tree.files_under(repo_rel) if is_dir else [repo_rel]
            for repo_file in files:
                if tree.kind(repo_file) != "file":
                    self.issues.add(
                        line, where, f"{repo_file} leads outside the repository; remove the link"
                    )
                    return None
                dest = host if not is_dir else posixpath.join(host, repo_file[len(repo_rel) + 1 :])
                self.acc.config_files[dest] = ConfigFile(repo_file, dest, tree.digest(repo_file))
        except (OSError, TreeEscape):
            self.issues.add(line, where, f"cannot read {repo_rel} from the repository")
            return None
        return host

    def bind(
        self, source: str, target: str, read_only: bool | None, line: int | None, where: str
    ) -> Mount | None:
        """Classify a bind source (see module doc); ``read_only`` ``None`` = not said."""
        ctx = self.ctx
        lock = ctx.lock_dir.rstrip("/")
        if source.startswith("/"):
            clean = posixpath.normpath(source)
            if clean == lock or clean.startswith(lock + "/"):
                return Mount("lock", clean, target, bool(read_only))
            return Mount("host", clean, target, bool(read_only))
        if source.startswith("~"):
            message = f"{source!r}: a home-relative path is not portable; use an absolute path"
            self.issues.add(line, where, message)
            return None
        repo_rel = ctx.tree.normalize(source, ctx.stack_dir)
        kind = "outside" if repo_rel is None else ctx.tree.kind(repo_rel)
        if repo_rel is None or kind == "outside":
            self.issues.add(
                line, where, f"{source!r} leads outside the repository; use a path in it"
            )
            return None
        rel = posixpath.relpath(repo_rel, ctx.stack_dir) if ctx.stack_dir else repo_rel
        if kind in ("file", "dir") and ctx.seeded(repo_rel):
            host = posixpath.join(ctx.state_dir, "data", ctx.device, ctx.stack, rel)
            problem = seed(ctx.tree, self.acc, repo_rel, host, is_dir=kind == "dir")
            if problem is not None:
                self.issues.add(line, where, problem)
                return None
            return Mount("data", host, target, bool(read_only))
        if kind in ("file", "dir"):
            copy = self._config_source(repo_rel, line, where)
            if copy is None:
                return None
            if read_only is False:
                message = (
                    f"{source!r} from the repository is mounted writable: the app writes to a "
                    "copy made for this revision, left behind at the next change; list "
                    f"{rel} under seed: in stacks/{ctx.stack}/stack.yaml to seed it once and "
                    "keep what the app writes, or mount it :ro"
                )
                self.issues.warn(line, where, message)
            return Mount("config", copy, target, True if read_only is None else read_only)
        if rel == "." or rel.startswith("../"):
            message = (
                f"data path {source!r} is outside the stack directory; "
                f"keep data under stacks/{ctx.stack}/"
            )
            self.issues.add(line, where, message)
            return None
        if looks_like_file(rel):
            message = (
                f"{source!r} is not in the repository, so it becomes an empty data "
                f"directory (as Compose would create one); ship the file as "
                f"stacks/{ctx.stack}/{rel}, or use a named volume or a data directory "
                "without a file extension"
            )
            self.issues.warn(line, where, message)
        host = posixpath.join(ctx.state_dir, "data", ctx.device, ctx.stack, rel)
        self.acc.data_dirs[host] = None
        return Mount("data", host, target, bool(read_only))

    def _named(
        self, source: str, target: str, read_only: bool, line: int | None, where: str
    ) -> Mount | None:
        declared = self._declared("volumes")
        if source not in declared:
            message = f"volume {source!r} is not declared; add it under top-level volumes"
            self.issues.add(line, where, message)
            return None
        self.acc.volumes[source] = None
        return Mount("volume", volume_name(source, declared, self.ctx.prefix), target, read_only)

    def _short(self, spec: str, line: int | None, where: str) -> Mount | None:
        parts = spec.split(":")
        if len(parts) == 1:
            message = (
                f"{spec!r} is an anonymous volume; name it (myvol:{spec}) "
                "so its data survives updates"
            )
            self.issues.add(line, where, message)
            return None
        if len(parts) > 3 or not parts[0] or not parts[1]:
            self.issues.add(line, where, f"{spec!r} is not source:target[:mode]")
            return None
        source, target = parts[0], parts[1]
        modes = parts[2].split(",") if len(parts) == 3 else []
        refused = [m for m in modes if m in _REFUSED_MODES]
        if refused:
            self.issues.add(line, where, f"{spec!r}: :{refused[0]} is {_REFUSED_MODES[refused[0]]}")
            return None
        unknown = [m for m in modes if m not in _MODES]
        if unknown:
            self.issues.add(line, where, f"{spec!r}: unknown mode {unknown[0]!r}; use ro or rw")
            return None
        read_only = True if "ro" in modes else (False if "rw" in modes else None)
        if source.startswith((".", "/", "~")):
            return self.bind(source, target, read_only, line, where)
        return self._named(source, target, bool(read_only), line, where)

    def _long(self, spec: Mapping[str, Any], line: int | None, where: str) -> Mount | None:
        kind = scalar_text(spec.get("type") or "volume")
        target = scalar_text(spec.get("target") or "")
        source = scalar_text(spec.get("source") or "")
        if not target:
            self.issues.add(line, where, "target is required")
            return None
        ro = spec.get("read_only")
        read_only = ro if isinstance(ro, bool) else None
        refused = self._refused_options(spec)
        if refused:
            self.issues.add(line, where, refused)
            return None
        if kind == "bind":
            if not source:
                self.issues.add(line, where, "a bind mount needs a source")
                return None
            return self.bind(source, target, read_only, line, where)
        if kind == "volume":
            if not source:
                message = "anonymous volume; give it a source name so its data survives updates"
                self.issues.add(line, where, message)
                return None
            return self._named(source, target, bool(read_only), line, where)
        if kind == "tmpfs":
            options = self._tmpfs_options(spec.get("tmpfs"), bool(read_only), line, where)
            if options:  # HostConfig.Tmpfs carries size and mode; Mount values have neither
                self.tmpfs.append((target, options))
                return None
            return Mount("tmpfs", "", target, bool(read_only))
        message = f"volume type {kind!r} is not supported; use bind, volume or tmpfs"
        self.issues.add(line, where, message)
        return None

    def _refused_options(self, spec: Mapping[str, Any]) -> str | None:
        """Long-syntax options fleetgate cannot carry, named (``docker compose config``'s
        ``bind.create_host_path`` and an empty ``volume: {}`` are fine)."""
        raw_bind, raw_volume = spec.get("bind"), spec.get("volume")
        bind: Mapping[str, Any] = raw_bind if isinstance(raw_bind, dict) else {}
        volume: Mapping[str, Any] = raw_volume if isinstance(raw_volume, dict) else {}
        if bind.get("selinux"):
            return f"bind.selinux :{scalar_text(bind['selinux'])} is {_REFUSED_MODES['z']}"
        if bind.get("propagation") not in (None, "rprivate"):
            return f"bind.propagation is {_REFUSED_MODES['rshared']}"
        if is_true(volume.get("nocopy")):
            return f"volume.nocopy is {_REFUSED_MODES['nocopy']}"
        if volume.get("subpath"):
            return "volume.subpath is not supported by fleetgate; mount the whole volume"
        return None

    def _tmpfs_options(self, spec: Any, read_only: bool, line: int | None, where: str) -> str:
        """``tmpfs: {size, mode}`` as mount options (``size=<bytes>,mode=<octal>``)."""
        out = ["ro"] if read_only and isinstance(spec, dict) and spec else []
        if not isinstance(spec, dict):
            return ""
        size = spec.get("size")
        if size is not None:
            try:
                out.append(f"size={size if isinstance(size, int) else parse_bytes(str(size))}")
            except ValueError as e:
                self.issues.add(line, f"{where}.tmpfs.size", str(e))
        mode = spec.get("mode")
        if mode is not None:
            text = scalar_text(mode)
            if not text.isdigit() or any(c in "89" for c in text):
                self.issues.add(line, f"{where}.tmpfs.mode", f"{text!r} is not an octal mode")
            else:
                out.append(f"mode={text}")
        return ",".join(out)

    def volumes(self, value: Any, where: str, line: int | None) -> None:
        """Add the mounts of a service's ``volumes`` list."""
        if value is None:
            return
        if not isinstance(value, list):
            self.issues.add(line, where, "must be a list")
            return
        for i, item in enumerate(value):
            item_line = line_of(value, i, line)
            if isinstance(item, str):
                mount = self._short(item, item_line, f"{where}[{i}]")
            elif isinstance(item, dict):
                mount = self._long(item, item_line, f"{where}[{i}]")
            else:
                self.issues.add(item_line, f"{where}[{i}]", "must be source:target or a mapping")
                continue
            if mount is not None:
                self.acc.mounts.append(mount)

    def files(self, kind: str, value: Any, where: str, line: int | None) -> None:
        """Add the mounts of a service's ``configs`` (kind "config") or ``secrets`` list."""
        if value is None:
            return
        if not isinstance(value, list):
            self.issues.add(line, where, "must be a list")
            return
        declared = self._declared(f"{kind}s")
        for i, item in enumerate(value):
            item_line = line_of(value, i, line)
            at = f"{where}[{i}]"
            if isinstance(item, dict):
                name = scalar_text(item.get("source") or "")
                target = scalar_text(item.get("target") or "")
            else:
                name, target = scalar_text(item), ""
            top = declared.get(name)
            if not isinstance(top, dict):
                message = f"{kind} {name!r} is not declared; add it under top-level {kind}s"
                self.issues.add(item_line, at, message)
                continue
            source = top.get("file")
            if not isinstance(source, str) or not source:
                other = next((k for k in ("content", "environment", "external") if k in top), "")
                message = f"{kind} {name!r} uses {other or 'no file'}; only file: is supported"
                self.issues.add(item_line, at, message)
                continue
            if kind == "secret":
                if not source.startswith("/"):
                    message = (
                        f"secret {name!r} must be an absolute path on the device; "
                        "never commit secrets"
                    )
                    self.issues.add(item_line, at, message)
                    continue
                target = target if target.startswith("/") else f"/run/secrets/{target or name}"
                self.acc.mounts.append(Mount("secret", posixpath.normpath(source), target, True))
                continue
            target = target if target.startswith("/") else f"/{target or name}"
            mount = self.bind(source, target, True, item_line, at)
            if mount is not None:
                self.acc.mounts.append(mount)


def tmpfs_entries(
    value: Any, where: str, line: int | None, issues: Issues
) -> tuple[tuple[str, str], ...]:
    """``tmpfs`` (a string or list of ``target[:options]``), sorted by target."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        issues.add(line, where, "must be a path or a list of paths")
        return ()
    out: dict[str, str] = {}
    for item in items:
        target, _, options = item.partition(":")
        out[target] = options
    return tuple(sorted(out.items()))
