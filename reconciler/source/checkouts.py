"""Materialized checkouts: the files of one commit as a read-only directory in the cache.

``<cache_dir>/checkouts/<sha>`` is content-addressed: written once through a temporary
directory renamed into place, reused as it is, and pruned by the agent to the
revisions it still needs. Every signed or pinned revision is read from here, never from
a working tree (see :mod:`reconciler.source.fetch`).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from reconciler.errors import SourceError
from reconciler.source.gitcmd import check, run_git

_SHA = re.compile(r"^[0-9a-f]{40}$")


def materialize(git_dir: Path, sha: str, cache_dir: Path, timeout: float, shown: str) -> Path:
    """The files of commit ``sha`` in ``<cache_dir>/checkouts/<sha>``, made read-only.

    Content-addressed and written through a temporary directory renamed into place,
    so a crash never leaves a half checkout under the final name and a finished one
    is reused as it is. ``git checkout-index`` writes symlinks as symlinks and never
    through them; :class:`RepoTree` refuses those that lead out of the tree.
    """
    final = cache_dir / "checkouts" / sha
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{sha[:12]}-"))
    index = tmp.with_name(tmp.name + ".index")
    try:
        tree = tmp / "tree"
        tree.mkdir()
        env = {"GIT_INDEX_FILE": str(index), "GIT_WORK_TREE": str(tree)}
        what = f"cannot check out {sha} of {shown}"
        check(
            run_git(["read-tree", sha], cwd=tree, git_dir=git_dir, env=env, timeout=timeout),
            what,
            timeout,
        )
        check(
            run_git(
                ["checkout-index", "--all", "--force"],
                cwd=tree,
                git_dir=git_dir,
                env=env,
                timeout=timeout,
            ),
            what,
            timeout,
        )
        make_read_only(tree)
        try:
            tree.rename(final)
        except OSError:
            if not final.is_dir():
                raise
    except OSError as e:
        raise SourceError(f"cannot check out {sha} of {shown}: {e.strerror}") from None
    finally:
        index.unlink(missing_ok=True)
        remove_tree(tmp)
    return final


def make_read_only(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        for name in dirnames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                p.chmod(0o555)
    root.chmod(0o555)


def remove_tree(path: Path) -> None:
    """Delete a (possibly read-only) directory tree; missing is fine."""
    if not path.exists():
        return
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                p.chmod(0o755)
    path.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


def prune_checkouts(cache_dir: Path, keep: set[str]) -> tuple[str, ...]:
    """Remove every materialized checkout whose SHA is not in ``keep``; return the removed.

    The caller keeps at least the applied, desired and last good revisions.
    """
    removed: list[str] = []
    folder = cache_dir / "checkouts"
    if not folder.is_dir():
        return ()
    for entry in sorted(folder.iterdir()):
        if entry.name in keep or not (_SHA.match(entry.name) or entry.name.startswith(".")):
            continue
        remove_tree(entry)
        if _SHA.match(entry.name):
            removed.append(entry.name)
    return tuple(removed)
