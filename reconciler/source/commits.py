"""Git history of a local fleet clone: resolve revisions, walk commits, make revert commits.

The review commands (``impact``, ``history``, ``rollback``) read history here; the files
of one revision come from :func:`reconciler.source.fetch.open_source` with ``ref`` (a
read-only, content-addressed checkout). Every git call goes through
:func:`reconciler.source.gitcmd.run_git`; every failure is one :class:`SourceError`
line that says what to do.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.errors import Finding, SourceError
from reconciler.source.gitcmd import check, run_git

if TYPE_CHECKING:
    from reconciler.manifests.waves import Rollout

_SHA = re.compile(r"^[0-9a-f]{40}$")
_SEP = "\x1f"
TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """One commit as an auditor sees it (times are RFC 3339 as git prints ``%cI``)."""

    sha: str
    parents: tuple[str, ...]
    author: str  # "Name <email>"
    authored_at: str
    committed_at: str
    subject: str
    paths: tuple[str, ...] = ()  # files changed against the first parent (when asked for)


def toplevel(path: Path) -> Path:
    """The work tree root of the Git repository containing ``path``."""
    if not path.is_dir():
        raise SourceError(
            f"--repo {path}: not a folder; pass a local clone of the fleet repository"
        )
    result = run_git(["rev-parse", "--show-toplevel"], cwd=path, timeout=TIMEOUT)
    if result.status != 0:
        raise SourceError(f"--repo {path}: not a Git repository; pass a local clone")
    return Path(result.stdout.strip())


def resolve(path: Path, rev: str) -> str:
    """The full SHA of the commit ``rev`` names (``HEAD~2``, a branch, a tag, a SHA)."""
    result = run_git(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        cwd=path,
        timeout=TIMEOUT,
    )
    sha = result.stdout.strip()
    if result.status != 0 or not _SHA.match(sha):
        raise SourceError(f"unknown revision {rev!r} in {path}; pass a commit, branch or tag")
    return sha


def _parse(record: str) -> CommitInfo:
    sha, parents, name, email, authored, committed, subject = record.split(_SEP, 6)
    return CommitInfo(
        sha=sha,
        parents=tuple(parents.split()),
        author=f"{name} <{email}>",
        authored_at=authored,
        committed_at=committed,
        subject=subject,
    )


_FORMAT = _SEP.join(("%H", "%P", "%an", "%ae", "%aI", "%cI", "%s"))


def commit_info(path: Path, sha: str) -> CommitInfo:
    out = check(
        run_git(
            ["show", "--no-patch", f"--format={_FORMAT}", sha, "--"], cwd=path, timeout=TIMEOUT
        ),
        f"cannot read commit {sha}",
        TIMEOUT,
    )
    return _parse(out.rstrip("\n"))


PIN_ONLY_SCAN = 500  # commits looked through for the newest that is more than a pin move


def release_candidate(path: Path, head: str) -> tuple[str, frozenset[str]]:
    """The first wave's candidate, ``head`` passing over commits that only move pins, and
    the pin-only commits passed over (a first-wave device running one of them runs the
    candidate's state: ``waves/`` does not change what the first wave renders).

    A promotion (or the rollback of one) changes only ``waves/``: it is not a release, and
    counting it would make every promotion a new candidate for the next.
    """
    passed: list[str] = []
    for commit in first_parent_log(path, head, max_count=PIN_ONLY_SCAN):
        if not commit.paths or any(not p.startswith("waves/") for p in commit.paths):
            return commit.sha, frozenset(passed)
        passed.append(commit.sha)
    return head, frozenset()


def first_parent_log(path: Path, rev: str, max_count: int | None = None) -> tuple[CommitInfo, ...]:
    """Commits reachable from ``rev`` along first parents, newest first, with changed paths.

    First parents are the revisions the branch actually pointed to, i.e. what a device
    following the branch could have run; a merge counts as one change.
    """
    args = ["log", "--first-parent", "-m", "--no-renames", "--name-only", f"--format=\x1e{_FORMAT}"]
    if max_count is not None:
        args.append(f"--max-count={max_count}")
    out = check(
        run_git([*args, resolve(path, rev), "--"], cwd=path, timeout=TIMEOUT),
        f"cannot read the history of {rev}",
        TIMEOUT,
    )
    commits: list[CommitInfo] = []
    for chunk in out.split("\x1e")[1:]:
        head, _, rest = chunk.partition("\n")
        info = _parse(head)
        paths = tuple(sorted({p for p in rest.splitlines() if p.strip()}))
        commits.append(
            CommitInfo(
                info.sha,
                info.parents,
                info.author,
                info.authored_at,
                info.committed_at,
                info.subject,
                paths,
            )
        )
    return tuple(commits)


def dirty_paths(path: Path) -> tuple[str, ...]:
    """Tracked files with uncommitted changes (staged or not); untracked files don't count."""
    out = check(
        run_git(["status", "--porcelain", "--untracked-files=no"], cwd=path, timeout=TIMEOUT),
        f"cannot read the status of {path}",
        TIMEOUT,
    )
    return tuple(line[3:] for line in out.splitlines() if line.strip())


def revert(path: Path, sha: str, mainline: int | None, message: str) -> str:
    """Commit the revert of ``sha`` onto the current branch with ``message``; return its SHA.

    On a conflict nothing is left behind (``git revert --abort``) and the error names
    the conflicting files.
    """
    args = ["revert", "--no-commit"]
    if mainline is not None:
        args += ["--mainline", str(mainline)]
    result = run_git([*args, sha], cwd=path, timeout=TIMEOUT)
    if result.status != 0:
        conflicts = run_git(
            ["diff", "--name-only", "--diff-filter=U"], cwd=path, timeout=TIMEOUT
        ).stdout.split()
        run_git(["revert", "--abort"], cwd=path, timeout=TIMEOUT)
        if conflicts:
            raise SourceError(
                f"reverting {sha[:12]} conflicts with later commits in {', '.join(conflicts)}; "
                "revert by hand (git revert) and resolve the conflicts"
            )
        check(result, f"cannot revert {sha[:12]}", TIMEOUT)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".msg", delete=False) as f:
        f.write(message)
    try:
        committed = run_git(["commit", "--quiet", "--file", f.name], cwd=path, timeout=TIMEOUT)
    finally:
        Path(f.name).unlink(missing_ok=True)
    if committed.status != 0:
        run_git(["revert", "--abort"], cwd=path, timeout=TIMEOUT)
        if "nothing to commit" in committed.stdout + committed.stderr:
            raise SourceError(f"reverting {sha[:12]} changes no file; it is already undone")
        if "identity" in committed.stderr or "email" in committed.stderr:
            raise SourceError(
                "git does not know who you are; set git config user.name and user.email"
            )
        check(committed, f"cannot commit the revert of {sha[:12]}", TIMEOUT)
    return resolve(path, "HEAD")


def reword_head(path: Path, message: str) -> str:
    """Replace the message of the commit this process just made at ``HEAD``; its new SHA."""
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".msg", delete=False) as f:
        f.write(message)
    try:
        check(
            run_git(
                ["commit", "--amend", "--quiet", "--no-verify", "--file", f.name],
                cwd=path,
                timeout=TIMEOUT,
            ),
            "cannot write the revert message",
            TIMEOUT,
        )
    finally:
        Path(f.name).unlink(missing_ok=True)
    return resolve(path, "HEAD")


def tree_of(path: Path, rev: str) -> str:
    """The tree SHA of a commit (two commits with equal trees have identical files)."""
    return check(
        run_git(["rev-parse", f"{rev}^{{tree}}"], cwd=path, timeout=TIMEOUT),
        f"cannot read the tree of {rev}",
        TIMEOUT,
    ).strip()


@contextlib.contextmanager
def scratch_cache(keep: Path | None = None) -> Iterator[Path]:
    """A cache directory for checkouts: ``keep`` as it is, or a temporary one removed after.

    Checkouts are read-only, so the temporary one is made writable before removal.
    """
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    tmp = Path(tempfile.mkdtemp(prefix="fleetgate-review-"))
    try:
        yield tmp
    finally:
        for dirpath, dirnames, _ in os.walk(tmp):
            for name in dirnames:
                p = Path(dirpath) / name
                if not p.is_symlink():
                    p.chmod(0o755)
        shutil.rmtree(tmp, ignore_errors=True)


def is_ancestor(path: Path, ancestor: str, descendant: str) -> bool:
    """Whether commit ``ancestor`` is ``descendant`` or one of its ancestors.

    A commit unknown to the clone (a pin to a commit that was never pushed here) is not
    an ancestor.
    """
    result = run_git(
        ["merge-base", "--is-ancestor", ancestor, descendant], cwd=path, timeout=TIMEOUT
    )
    if result.status in (0, 1):
        return result.status == 0
    if "Not a valid" in result.stderr or "not a valid" in result.stderr:
        return False
    check(
        result, f"cannot tell whether {ancestor[:12]} is an ancestor of {descendant[:12]}", TIMEOUT
    )
    return False


def commit_file(path: Path, relpath: str, text: str, message: str) -> str:
    """Write ``relpath`` (repository-relative) with ``text`` and commit only that file.

    Used by ``promote`` to write ``waves/<wave>.yaml``. The file is written to a temporary
    name and renamed; a failed commit restores nothing else because nothing else was
    staged (the caller refuses a dirty tree first). Returns the new commit's SHA.
    """
    target = path / relpath
    if target.is_symlink():
        raise SourceError(f"{relpath} is a symlink; fleetgate never writes through one")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    check(
        run_git(["add", "--", relpath], cwd=path, timeout=TIMEOUT),
        f"cannot stage {relpath}",
        TIMEOUT,
    )
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".msg", delete=False) as f:
        f.write(message)
    try:
        committed = run_git(
            ["commit", "--quiet", "--file", f.name, "--", relpath], cwd=path, timeout=TIMEOUT
        )
    finally:
        Path(f.name).unlink(missing_ok=True)
    if committed.status != 0:
        if "identity" in committed.stderr or "email" in committed.stderr:
            raise SourceError(
                "git does not know who you are; set git config user.name and user.email"
            )
        check(committed, f"cannot commit {relpath}", TIMEOUT)
    return resolve(path, "HEAD")


def commit_message(path: Path, sha: str) -> str:
    """The full message of commit ``sha``."""
    return check(
        run_git(["show", "--no-patch", "--format=%B", sha, "--"], cwd=path, timeout=TIMEOUT),
        f"cannot read commit {sha}",
        TIMEOUT,
    )


def pin_findings(path: Path, head: str, rollout: Rollout) -> list[Finding]:
    """One finding per wave pin that is not an ancestor of ``head`` (DESIGN.md §6)."""
    out: list[Finding] = []
    for name, pin in sorted((rollout.pins or {}).items()):
        if not is_ancestor(path, pin.revision, head):
            message = (
                f"wave {name}: revision {pin.revision[:12]} is not an ancestor of HEAD "
                f"{head[:12]}; pin a commit of this branch (fetch it, or promote again)"
            )
            out.append(Finding(pin.location.path, pin.location.line, message))
    return out
