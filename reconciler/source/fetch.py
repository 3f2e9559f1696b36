"""The Git source adapter: turn ``--repo`` (a path or a Git URL) into a directory and a revision.

The :mod:`reconciler.source` package is the only place that runs git. It hands the pipeline a
plain directory of files (read through :class:`reconciler.manifests.tree.RepoTree`) and the
full 40-hex commit SHA it came from. Contracts:

- A **local path** without ``allowed_signers`` is used as it is (the working tree,
  uncommitted edits included, ``dirty`` set): the developer workflow of ``validate`` /
  ``render``. Its revision is ``HEAD`` of the enclosing Git repository, or ``None``
  outside one. With an explicit ``ref`` the committed tree of that revision is
  materialized instead.
- A **signed local path** (``allowed_signers`` given) never reads the working tree: the
  verified commit (``HEAD`` or ``ref``) is materialized like a URL checkout, so edits
  hidden from ``git status`` (``update-index --assume-unchanged`` / ``--skip-worktree``),
  uncommitted edits and untracked files are never what runs.
- A **full 40-hex ref** is a commit, never a branch or tag of that name (git itself
  ignores such refs when given 40 hex digits); it must name a commit object itself.
- A **URL** (``file://``, ``git://``, ``http(s)://``, ``ssh://``, scp-like
  ``user@host:path``) is fetched into a bare mirror under
  ``<cache_dir>/mirrors/<hash>.git`` (keyed by the URL *without* credentials), the ref
  (default: the remote ``HEAD``) is resolved to a full SHA, and that revision is
  materialized read-only in ``<cache_dir>/checkouts/<sha>``. The mirror keeps full
  history on purpose: the agent must be able to return to its last good revision
  without the network, and a fleet repository is small.
- A full SHA that is already in the mirror is served without touching the network.
- Every git process is killed after ``timeout`` seconds (with its helpers: see
  :mod:`reconciler.source.gitcmd`); it never prompts (``GIT_TERMINAL_PROMPT=0``, ssh ``BatchMode``).
- Credentials in a URL (``https://user:token@host``) are never written to disk nor put
  on a command line: they reach git through the environment and an inline credential
  helper. Every message shows the URL as ``scheme://***@host`` (any userinfo, any scheme:
  :mod:`reconciler.redaction`), and git's own complaints are redacted the same way.
- Every failure is a one-line :class:`SourceError`.
- Source security (optional, see :mod:`reconciler.source.verify`): with
  ``allowed_signers`` the resolved commit must carry a valid signature by an allowed
  key, and with ``forward_from`` it must be that revision or a descendant of it. Both
  are checked on the Git objects *before* any file of the commit is materialized, so
  a refused commit never reaches the manifest parser.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from reconciler.errors import SourceError
from reconciler.redaction import redact_url
from reconciler.source.checkouts import materialize
from reconciler.source.gitcmd import check, run_git
from reconciler.source.verify import Guard

_SHA = re.compile(r"^[0-9a-f]{40}$")
_SCHEME_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?:(?P<userinfo>[^@/]*)@)?")
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?[^/:]+:(?!//)")

_LOCK_POLL = 0.05


@dataclass(frozen=True, slots=True)
class Checkout:
    """One revision of the fleet repository as a directory.

    ``root`` is the directory the manifests are read from. ``revision`` is the full
    40-hex commit SHA, or ``None`` for a local directory outside Git. ``dirty`` is true
    when ``root`` is a local working tree whose files differ from ``revision``.
    ``url`` is the redacted source URL (``None`` for a local path).
    """

    root: Path
    revision: str | None
    dirty: bool = False
    url: str | None = None


# ------------------------------------------------------------------------- URLs


def is_url(repo: str) -> bool:
    """Whether ``repo`` names a remote (any ``scheme://`` or scp-like ``host:path``).

    Follows git's own rule: a colon before the first slash makes ``host:path``.
    """
    return bool(_SCHEME_URL.match(repo)) or bool(_SCP_LIKE.match(repo))


def _split_credentials(url: str) -> tuple[str, Mapping[str, str]]:
    """The URL without http(s) credentials, and the environment that carries them."""
    match = _SCHEME_URL.match(url)
    if not match or match.group("userinfo") is None:
        return url, {}
    scheme = match.group("scheme").lower()
    if scheme not in ("http", "https"):
        return url, {}
    username, _, password = match.group("userinfo").partition(":")
    bare = f"{match.group('scheme')}://{url[match.end() :]}"
    return bare, {
        "FLEETGATE_GIT_USERNAME": unquote(username),
        "FLEETGATE_GIT_PASSWORD": unquote(password),
    }


def cache_key(url: str) -> str:
    """The mirror directory name for ``url``: a hash of the URL without credentials."""
    stripped = redact_url(_split_credentials(url)[0]).rstrip("/")
    if stripped.endswith(".git"):
        stripped = stripped[: -len(".git")]
    return hashlib.sha256(stripped.encode()).hexdigest()[:24]


# --------------------------------------------------------------------- remote refs


def _parse_ls_remote(output: str) -> tuple[dict[str, str], str | None]:
    """``ls-remote --symref`` output as (ref -> sha, peeled tags included) and HEAD's target."""
    refs: dict[str, str] = {}
    head_target: str | None = None
    for line in output.splitlines():
        if line.startswith("ref: "):
            target, _, name = line[len("ref: ") :].partition("\t")
            if name == "HEAD":
                head_target = target
            continue
        sha, _, name = line.partition("\t")
        if _SHA.match(sha) and name:
            refs[name] = sha
    return refs, head_target


def _pick(refs: Mapping[str, str], ref: str | None, head_target: str | None) -> str | None:
    """The commit SHA ``ref`` names in ``refs`` (tags peeled), or ``None``."""
    if ref is None:
        if "HEAD" in refs:
            return refs["HEAD"]
        return refs.get(head_target) if head_target else None
    for name in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        if name.startswith("refs/tags/") and f"{name}^{{}}" in refs:
            return refs[f"{name}^{{}}"]
        if name in refs:
            return refs[name]
    return None


def remote_head(url: str, ref: str | None = None, timeout: float = 30.0) -> str:
    """The full SHA ``ref`` (default: the remote ``HEAD``) points to now, via ``ls-remote``.

    Cheap ("did the ref move?"): no objects are transferred. A full 40-hex ``ref`` is
    returned as it is.
    """
    if ref is not None and _SHA.match(ref):
        return ref
    shown = redact_url(url)
    bare, env = _split_credentials(url)
    result = run_git(["ls-remote", "--symref", "--", bare], cwd=None, timeout=timeout, env=env)
    refs, head_target = _parse_ls_remote(check(result, f"cannot list refs of {shown}", timeout))
    sha = _pick(refs, ref, head_target)
    if sha is None:
        wanted = "HEAD (is the repository empty?)" if ref is None else repr(ref)
        raise SourceError(f"{shown} has no ref {wanted}")
    return sha


# --------------------------------------------------------------------- the source


def open_source(
    repo: str,
    cache_dir: Path,
    ref: str | None = None,
    timeout: float = 60.0,
    *,
    allowed_signers: Path | None = None,
    forward_from: str | None = None,
) -> Checkout:
    """Resolve ``repo`` at ``ref`` to a directory of files and a full commit SHA.

    See the module docstring for the contract of local paths and URLs. ``cache_dir``
    holds mirrors and checkouts; it is created when missing and may be shared by
    several processes (each mirror is locked while it is fetched).
    ``allowed_signers`` / ``forward_from``: see :class:`Guard` (raises
    ``SignatureError`` / ``SourceError`` before anything is checked out).
    """
    guard = Guard(allowed_signers, forward_from)
    if is_url(repo):
        return _open_url(repo, cache_dir, ref, timeout, guard)
    return _open_path(Path(repo), cache_dir, ref, timeout, guard)


def _open_path(
    path: Path, cache_dir: Path, ref: str | None, timeout: float, guard: Guard
) -> Checkout:
    if not path.is_dir():
        raise SourceError(f"repository {path} is not a directory")
    probe = run_git(["rev-parse", "--show-toplevel", "--show-prefix"], cwd=path, timeout=timeout)
    if probe.status != 0:
        if ref is not None:
            raise SourceError(f"repository {path} is not a Git repository; cannot check out {ref}")
        if guard.allowed_signers is not None:
            raise SourceError(
                f"repository {path} is not a Git repository; with allowed signers only a "
                "signed commit is read (clone the fleet repository there)"
            )
        return Checkout(root=path, revision=None)
    prefix = (probe.stdout.splitlines()[1:2] or [""])[0].strip().rstrip("/")
    if ref is None and guard.allowed_signers is None:
        return _working_tree(path, timeout, guard)
    if ref is None:
        head = run_git(
            ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], cwd=path, timeout=timeout
        )
        if head.status != 0 or not _SHA.match(head.stdout.strip()):
            raise SourceError(f"repository {path} has no commit; commit (signed) first")
        sha = head.stdout.strip()
    else:
        sha = _resolve_local(path, ref, timeout, shown=str(path))
    git_dir = _git_dir(path, timeout)
    guard.check(git_dir, sha, timeout)
    root = materialize(git_dir, sha, cache_dir, timeout, shown=str(path))
    return Checkout(root=root / prefix if prefix else root, revision=sha)


def _working_tree(path: Path, timeout: float, guard: Guard) -> Checkout:
    """An unsigned local repository as it is on disk: ``HEAD`` plus whatever is uncommitted.

    Only without ``allowed_signers`` (a signed source never reads a working tree);
    ``forward_from`` is still checked on ``HEAD``.
    """
    head = run_git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], cwd=path, timeout=timeout)
    if head.status != 0:
        return Checkout(root=path, revision=None, dirty=True)
    status = run_git(
        ["status", "--porcelain", "--untracked-files=normal", "--", "."],
        cwd=path,
        timeout=timeout,
    )
    dirty = status.status != 0 or bool(status.stdout.strip())
    if guard.active:
        guard.check(_git_dir(path, timeout), head.stdout.strip(), timeout)
    return Checkout(root=path, revision=head.stdout.strip(), dirty=dirty)


def _git_dir(path: Path, timeout: float) -> Path:
    return Path(
        check(
            run_git(["rev-parse", "--absolute-git-dir"], cwd=path, timeout=timeout),
            f"cannot read {path}",
            timeout,
        ).strip()
    )


def _open_url(url: str, cache_dir: Path, ref: str | None, timeout: float, guard: Guard) -> Checkout:
    shown = redact_url(url)
    mirror = cache_dir / "mirrors" / f"{cache_key(url)}.git"
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with mirror_lock(mirror.with_suffix(".lock"), timeout, shown):
        if not (mirror / "HEAD").is_file():
            init_mirror(mirror, shown, timeout)
        sha = _have_commit(mirror, ref, timeout) if ref is not None and _SHA.match(ref) else None
        if sha is None:
            _fetch(mirror, url, shown, timeout)
            sha = _resolve_local(mirror, ref or "refs/fleetgate/HEAD", timeout, shown=shown)
        guard.check(mirror, sha, timeout)
        root = materialize(mirror, sha, cache_dir, timeout, shown=shown)
    return Checkout(root=root, revision=sha, url=shown)


def init_mirror(mirror: Path, shown: str, timeout: float) -> None:
    """Create the bare mirror in a temporary directory, then move it into place."""
    tmp = Path(tempfile.mkdtemp(dir=mirror.parent, prefix=".init-"))
    try:
        check(
            run_git(["init", "--bare", "--quiet", str(tmp)], cwd=None, timeout=timeout),
            f"cannot create a mirror of {shown}",
            timeout,
        )
        (tmp / "fleetgate-url").write_text(shown + "\n", encoding="utf-8")
        shutil.rmtree(mirror, ignore_errors=True)
        tmp.rename(mirror)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fetch(mirror: Path, url: str, shown: str, timeout: float) -> None:
    bare, env = _split_credentials(url)
    result = run_git(
        [
            "fetch",
            "--quiet",
            "--prune",
            "--force",
            "--no-tags",
            "--no-write-fetch-head",
            "--",
            bare,
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
            "+HEAD:refs/fleetgate/HEAD",
        ],
        cwd=None,
        git_dir=mirror,
        timeout=timeout,
        env=env,
    )
    if result.status != 0 and "couldn't find remote ref HEAD" in result.stderr:
        raise SourceError(f"cannot fetch {shown}: the repository has no commits (no HEAD)")
    check(result, f"cannot fetch {shown}", timeout)


def _have_commit(git_dir: Path, sha: str, timeout: float) -> str | None:
    """``sha`` when it is a commit object in ``git_dir`` (not a tag or tree), else ``None``."""
    found = run_git(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{sha}^{{commit}}"],
        cwd=None,
        git_dir=git_dir,
        timeout=timeout,
    )
    return sha if found.status == 0 and found.stdout.strip() == sha else None


def _resolve_local(repo: Path, ref: str, timeout: float, shown: str) -> str:
    """The full SHA of the commit ``ref`` names in a local repository (branch, tag, SHA).

    A full 40-hex ``ref`` is the commit itself and never a branch or tag named like it
    (a pushed branch ``refs/heads/<sha of a good commit>`` must not redirect a pinned
    revision); it must be a commit object, not an annotated tag that peels to one.
    """
    in_bare = (repo / "HEAD").is_file() and not (repo / ".git").exists()
    git_dir = repo if in_bare else _git_dir(repo, timeout)
    if _SHA.match(ref):
        if _have_commit(git_dir, ref, timeout) is None:
            raise SourceError(f"{shown} has no commit {ref}")
        return ref
    for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
        result = run_git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{candidate}^{{commit}}"],
            cwd=None,
            git_dir=git_dir,
            timeout=timeout,
        )
        if result.timed_out:
            raise SourceError(f"cannot resolve {ref} in {shown}: timed out after {timeout:g}s")
        sha = result.stdout.strip()
        if result.status == 0 and _SHA.match(sha):
            return sha
    if ref == "refs/fleetgate/HEAD":
        raise SourceError(f"{shown} has no HEAD (is the repository empty?)")
    raise SourceError(f"{shown} has no branch, tag or commit {ref!r}")


@contextlib.contextmanager
def mirror_lock(lock_path: Path, timeout: float, shown: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (agent and CLI may share a cache)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SourceError(
                        f"the mirror of {shown} is locked by another fleetgate process "
                        f"for more than {timeout:g}s"
                    ) from None
                time.sleep(_LOCK_POLL)
        yield
    finally:
        os.close(fd)
