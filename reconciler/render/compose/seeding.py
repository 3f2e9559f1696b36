"""Repository paths a bind source may name besides configs: seeds and missing files.

- A path listed under stack.yaml ``seed:`` (seed, then persist) is a *data* directory
  (or file) at ``{state}/data/{device}/{stack}/{path}``, the place a missing relative
  source gets, so data written before the seed was declared stays. Its repository files
  are :class:`ConfigFile` entries whose destination lies in that data directory; the
  plan copies each one only where nothing is there yet (``SeedFile``), so what the app
  wrote survives updates, rollbacks and crashes.
- A *missing* source whose name has a file extension (``./acme.json``) was most likely
  meant to be committed: render warns (:func:`looks_like_file`).
"""

from __future__ import annotations

import posixpath
import re
from typing import Protocol

from reconciler.manifests.tree import RepoTree, TreeEscape
from reconciler.model import ConfigFile

SEED_MODE = 0o644
"""A seed file is the app's to change (a config file is read-only, ``0o444``)."""

_FILE_SUFFIX = re.compile(r"[^./][^/]*\.([a-z0-9]*[a-z][a-z0-9]*)", re.IGNORECASE)
_DIRECTORY_SUFFIXES = frozenset({"d"})  # conf.d, sites.d: directories by convention


class _Accumulator(Protocol):
    config_files: dict[str, ConfigFile]
    data_dirs: dict[str, None]


def looks_like_file(rel: str) -> bool:
    """Whether a missing bind source is clearly a file: its name has an extension
    (``acme.json``, ``ca.crt``, ``mosquitto.conf``) of at most 8 characters, not ``.d``.
    A name without one (``data``, ``.node-red``) is a data directory."""
    m = _FILE_SUFFIX.fullmatch(posixpath.basename(rel))
    return m is not None and len(m.group(1)) <= 8 and m.group(1) not in _DIRECTORY_SUFFIXES


def seed(
    tree: RepoTree, acc: _Accumulator, repo_rel: str, host: str, *, is_dir: bool
) -> str | None:
    """Register the seed files of the seeded repository path ``repo_rel`` (mounted from
    ``host``); the problem as a message when one cannot be read, else ``None``."""
    try:
        files = tree.files_under(repo_rel) if is_dir else [repo_rel]
        found: dict[str, ConfigFile] = {}
        for repo_file in files:
            if tree.kind(repo_file) != "file":
                return f"{repo_file} leads outside the repository; remove the link"
            dest = host if not is_dir else posixpath.join(host, repo_file[len(repo_rel) + 1 :])
            found[dest] = ConfigFile(repo_file, dest, tree.digest(repo_file), SEED_MODE)
    except (OSError, TreeEscape):
        return f"cannot read {repo_rel} from the repository"
    acc.config_files.update(found)
    if is_dir:
        acc.data_dirs[host] = None
    return None
