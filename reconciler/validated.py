"""Remembered validations: a device's desired state kept for a tree that already passed.

Validating and rendering a revision (JSON Schemas, semantics, the Compose subset, the
policy) is most of a no-change ``fleetgate apply``. A revision that passed is
remembered in ``<state>/devices/<device>/validated.json`` (mode 0600: it holds
rendered environment values) under a key of everything the result depends on:

- the **tree hash**: SHA-256 over every file path and content below the repository
  root as :class:`~reconciler.manifests.tree.RepoTree` reads it (``.git`` excluded), so
  an uncommitted edit, an untracked or ignored file, a file hidden from ``git status``
  or a directory outside Git is covered the same way as a commit;
- the revision, the device, the state directory (paths are rendered from it) and the
  local policy that narrows the fleet's;
- the fleetgate version and a fingerprint of its own code and schemas (path, size and
  modification time of every module and schema file), so an upgrade re-validates.

Any change is a miss and the revision is validated in full. Only a state that passed
every check is ever written, so the memo cannot make a bad manifest pass. A memo file
that cannot be read or parsed is ignored with one log line (``validated.unreadable``)
and replaced after the next full validation. Writes are atomic (temp file, fsync,
rename) and never follow a planted symlink (:func:`reconciler.store.write_atomic`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import reconciler
from reconciler.errors import FleetgateError
from reconciler.manifests.tree import RepoTree, TreeEscape
from reconciler.model import DesiredState, Policy
from reconciler.record import structure_state, unstructure_state
from reconciler.store import write_atomic

MEMO_VERSION = 1
FILE_NAME = "validated.json"

_code: str | None = None


def code_fingerprint() -> str:
    """Version and (path, size, mtime) of every ``.py`` / ``.json`` file of the package."""
    global _code  # noqa: PLW0603  # computed once per process: the code does not change under us
    if _code is None:
        package = Path(reconciler.__file__).parent
        h = hashlib.sha256(reconciler.__version__.encode())
        for folder, dirs, files in os.walk(package):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith((".py", ".json")):
                    path = Path(folder) / name
                    st = path.stat()
                    rel = path.relative_to(package)
                    h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        _code = h.hexdigest()
    return _code


def tree_hash(tree: RepoTree) -> str | None:
    """SHA-256 of every path and file content below the root; ``None`` when a path escapes
    the root or cannot be read (then nothing is remembered: validation reports it)."""
    h = hashlib.sha256()
    try:
        for path in tree.files_under(""):
            kind = tree.kind(path)
            h.update(f"{path}\0{kind}\0".encode())
            if kind == "outside":
                return None
            if kind == "file":  # never open a FIFO or a device node
                h.update(hashlib.sha256(tree.read_bytes(path)).digest())
    except (TreeEscape, OSError):
        return None
    return h.hexdigest()


def memo_key(
    tree: RepoTree, revision: str | None, device: str, state_dir: str, local: Policy | None
) -> str | None:
    """The key of a validation of ``tree`` for ``device``; ``None``: do not remember."""
    digest = tree_hash(tree)
    if digest is None:
        return None
    parts = [MEMO_VERSION, code_fingerprint(), digest, revision, device, state_dir, repr(local)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def memo_path(state_dir: Path | str, device: str) -> Path:
    return Path(state_dir) / "devices" / device / FILE_NAME


def recall(state_dir: Path | str, device: str, key: str | None, log: Any) -> DesiredState | None:
    """The state remembered under ``key``; ``None`` on a miss or an unusable memo (logged)."""
    if key is None:
        return None
    path = memo_path(state_dir, device)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("validated.unreadable", path=str(path), error=e.strerror)
        return None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("version") != MEMO_VERSION:
            raise ValueError("unknown memo version")
        if data.get("key") != key:
            return None
        return structure_state(data["desired"])
    except Exception as e:  # any damage to a cache file: validate in full
        log.warning("validated.unreadable", path=str(path), error=type(e).__name__)
        return None


def remember(
    state_dir: Path | str, device: str, key: str | None, desired: DesiredState, log: Any
) -> None:
    """Remember ``desired`` (it passed every check) under ``key``; a failed write is logged."""
    if key is None:
        return
    data = {"version": MEMO_VERSION, "key": key, "desired": unstructure_state(desired)}
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    try:
        write_atomic(memo_path(state_dir, device), raw, mode=0o600, root=Path(state_dir))
    except (OSError, FleetgateError) as e:
        log.warning("validated.unsaved", error=getattr(e, "strerror", None) or str(e))


def desired_state(
    tree: RepoTree,
    revision: str | None,
    device: str,
    state_dir: str,
    local: Policy | None,
    *,
    at: Callable[[Any], None],
    log: Any,
    remember_it: bool,
) -> DesiredState:
    """The device's desired state: recalled when ``remember_it`` and the key matches,
    else built (load + render + policy; raises ``ManifestError``) and, when it passed,
    kept. The render modules are imported only when the tree changed."""
    key = memo_key(tree, revision, device, state_dir, local) if remember_it else None
    known = recall(state_dir, device, key, log)
    if known is not None:
        log.debug("validated.remembered", revision=revision)
        return known
    from reconciler.render.desired import build_desired  # noqa: PLC0415  # lazy: see above

    desired = build_desired(tree, revision, device, state_dir, local=local, at=at)
    remember(state_dir, device, key, desired, log)
    return desired
