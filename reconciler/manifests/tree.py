"""Read-only access to the files of one revision of the fleet repository.

Every read of a repository file goes through :class:`RepoTree`, which guarantees
that nothing outside the repository root is ever opened: ``..`` segments,
absolute paths and symlinks that resolve outside the root are refused. The
source adapter hands the pipeline a checked-out directory; tests use any
directory.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

T = TypeVar("T")

PathKind = Literal["file", "dir", "missing", "outside"]
"""``outside``: the path escapes the root (``..``, absolute, or a symlink leading out)."""


class TreeEscape(Exception):
    """Internal: a path would leave the repository root."""


@dataclass(frozen=True, slots=True)
class RepoTree:
    """One revision's files. A tree is a snapshot: answers are cached for its lifetime
    (validate asks the same questions for 10,000 devices), so make a new tree per pass."""

    root: Path
    _memo: dict[tuple[str, str], object] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def _cached(self, what: str, relpath: str, compute: Callable[[], T]) -> T:
        key = (what, relpath)
        try:
            return self._memo[key]  # type: ignore[return-value]  # keyed by `what`
        except KeyError:
            value = compute()
            self._memo[key] = value
            return value

    def normalize(self, relpath: str, base: str = "") -> str | None:
        """Join ``relpath`` onto the repository-relative ``base`` folder; ``None`` if it escapes."""
        if relpath.startswith("/") or relpath.startswith("\\"):
            return None
        joined = (
            posixpath.normpath(posixpath.join(base, relpath))
            if base
            else posixpath.normpath(relpath)
        )
        if joined == ".." or joined.startswith("../") or joined.startswith("/"):
            return None
        return "" if joined == "." else joined

    def _real(self, relpath: str) -> Path:
        real = self._cached("real", relpath, lambda: self._resolve(relpath))
        if real is None:
            raise TreeEscape(relpath)
        return real

    def _resolve(self, relpath: str) -> Path | None:
        root = self._cached("real", "", self.root.resolve)
        assert root is not None
        if not relpath:
            return root
        candidate = (root / relpath).resolve()
        if candidate != root and root not in candidate.parents:
            return None
        return candidate

    def kind(self, relpath: str) -> PathKind:
        """What ``relpath`` (already normalized, repository-relative) is."""
        return self._cached("kind", relpath, lambda: self._kind(relpath))

    def _kind(self, relpath: str) -> PathKind:
        try:
            real = self._real(relpath)
        except TreeEscape:
            return "outside"
        # A symlink inside the tree pointing elsewhere inside the tree is fine.
        if real.is_dir():
            return "dir"
        if real.is_file():
            return "file"
        return "missing"

    def read_bytes(self, relpath: str) -> bytes:
        """The content of a file inside the tree; raises ``TreeEscape`` / ``OSError``."""
        return self._real(relpath).read_bytes()

    def size(self, relpath: str) -> int:
        return self._real(relpath).stat().st_size

    def list_dir(self, relpath: str) -> list[str]:
        """Sorted entry names of a directory (empty when missing)."""
        return list(self._cached("list", relpath, lambda: tuple(self._list_dir(relpath))))

    def _list_dir(self, relpath: str) -> list[str]:
        try:
            real = self._real(relpath)
        except TreeEscape:
            return []
        if not real.is_dir():
            return []
        return sorted(p.name for p in real.iterdir())

    def files_under(self, relpath: str) -> list[str]:
        """Every file below a directory, as sorted repository-relative paths.

        Entries that escape the root (symlinks leading out) are included so the
        caller can report them; ``kind`` tells them apart.
        """
        out: list[str] = []
        for name in self.list_dir(relpath):
            child = f"{relpath}/{name}" if relpath else name
            if name == ".git":
                continue
            kind = self.kind(child)
            if kind == "dir":
                out.extend(self.files_under(child))
            else:
                out.append(child)
        return out

    def digest(self, relpath: str) -> str:
        """``sha256:<hex>`` of a file, or of a directory (paths and contents, sorted)."""
        return self._cached("digest", relpath, lambda: self._digest(relpath))

    def _digest(self, relpath: str) -> str:
        h = hashlib.sha256()
        if self.kind(relpath) == "dir":
            for child in self.files_under(relpath):
                rel = child[len(relpath) + 1 :]
                h.update(rel.encode() + b"\0")
                h.update(hashlib.sha256(self.read_bytes(child)).digest())
        else:
            h.update(self.read_bytes(relpath))
        return "sha256:" + h.hexdigest()
