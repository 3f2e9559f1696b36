"""Source security checks on the mirror, before any file of a commit is materialized.

Two checks, both run against the Git object database (a bare mirror or a ``.git``
directory) between resolving the wanted SHA and checking it out, so a refused commit
never reaches the manifest parser:

- :func:`verify_commit`: the commit carries a valid signature by an allowed key.
  ``allowed_signers`` is either an OpenSSH *allowed signers* file
  (``principal ssh-ed25519 AAAA...``, see ``ssh-keygen(1)``; git's
  ``gpg.ssh.allowedSignersFile``) or an OpenPGP public keyring (armored ``.asc`` or
  binary ``.gpg``): every key in it is allowed. Unsigned, signed by another key, bad
  (tampered) signature: :class:`SignatureError` with one line saying which.
- :func:`check_forward`: the tracked ref only moves forward. The new revision must be
  the old one or a descendant of it; a ref moved back to an older commit or to an
  unrelated / rewritten history is refused with :class:`SourceError` (a rollback is a
  forward ``git revert`` commit, see ``fleetgate rollback``).

Both verdicts come from git itself (``verify-commit``, ``merge-base --is-ancestor``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reconciler.errors import RewindRefused, SignatureError, SourceError
from reconciler.source.gitcmd import reason, run_git

_WAY_BACK = "to go back, push a forward revert (fleetgate rollback REV) or set allowRewind: true"


@dataclass(frozen=True, slots=True)
class Signer:
    """Who signed a verified commit: the key fingerprint and, for SSH, the principal."""

    format: Literal["ssh", "openpgp"]
    fingerprint: str
    principal: str = ""


# --------------------------------------------------------------------- signatures


def verify_commit(git_dir: Path, sha: str, allowed_signers: Path, timeout: float) -> Signer:
    """The signer of commit ``sha`` when it is signed by a key in ``allowed_signers``.

    Raises :class:`SignatureError` (one line) when the commit is unsigned, signed by a
    key that is not allowed, or its signature does not match its content; and when the
    allowed signers file is missing or the check itself cannot run.
    """
    short = sha[:12]
    if not allowed_signers.is_file():
        raise SignatureError(
            f"allowedSigners file {allowed_signers} does not exist; commit {short} not applied"
        )
    if _is_openpgp(allowed_signers):
        with tempfile.TemporaryDirectory(prefix="fleetgate-gnupg-") as home:
            _import_keyring(allowed_signers, Path(home), timeout)
            return _verify(git_dir, sha, allowed_signers, timeout, {"GNUPGHOME": home})
    return _verify(git_dir, sha, allowed_signers, timeout, {})


def _verify(git_dir: Path, sha: str, allowed: Path, timeout: float, env: dict[str, str]) -> Signer:
    short = sha[:12]
    config = ["-c", f"gpg.ssh.allowedSignersFile={allowed}", "-c", "gpg.ssh.revocationFile="]
    shown = run_git(
        [*config, "show", "--no-patch", "--format=%G?%x00%GK%x00%GS%x00%GF", sha, "--"],
        cwd=None,
        git_dir=git_dir,
        env=env,
        timeout=timeout,
    )
    if shown.status != 0:
        raise SignatureError(
            f"cannot check the signature of commit {short}: {reason(shown, timeout)}"
        )
    fields = [*shown.stdout.strip("\n").split("\x00"), "", "", "", ""]
    verdict, key, principal, fingerprint = (f.strip() for f in fields[:4])
    openpgp = bool(env)
    if verdict == "N":
        raise SignatureError(
            f"commit {short} is not signed; only commits signed by a key in {allowed} are applied"
        )
    if verdict == "B":
        raise SignatureError(
            f"commit {short} has a bad signature: its content was changed after signing"
        )
    if verdict == "U" and not openpgp:
        raise SignatureError(
            f"commit {short} is signed by key {fingerprint or key}, which is not in {allowed}"
        )
    if verdict == "E":
        raise SignatureError(
            f"commit {short} is signed by key {key or 'unknown'}, which is not in {allowed}"
        )
    if verdict in ("X", "Y", "R"):
        what = {"X": "an expired signature", "Y": "an expired key", "R": "a revoked key"}[verdict]
        raise SignatureError(f"commit {short} is signed with {what} ({fingerprint or key})")
    if verdict not in ("G", "U"):
        raise SignatureError(f"commit {short}: unexpected signature verdict {verdict!r}")
    # Belt and braces: git's own exit status must agree (it is the documented gate).
    checked = run_git(
        [*config, "verify-commit", sha], cwd=None, git_dir=git_dir, env=env, timeout=timeout
    )
    if checked.status != 0 and not (openpgp and verdict == "U"):
        raise SignatureError(
            f"commit {short} failed signature verification: {reason(checked, timeout)}"
        )
    return Signer(
        format="openpgp" if openpgp else "ssh",
        fingerprint=fingerprint or key,
        principal=principal,
    )


def _is_openpgp(path: Path) -> bool:
    """An armored or binary OpenPGP keyring (anything else is an SSH allowed signers file)."""
    with path.open("rb") as f:
        head = f.read(64)
    if head.lstrip().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"):
        return True
    return bool(head) and head[0] & 0x80 != 0  # an OpenPGP packet tag byte


def _import_keyring(keyring: Path, home: Path, timeout: float) -> None:
    """Import every key of ``keyring`` into a throwaway ``GNUPGHOME``."""
    gpg = shutil.which("gpg")
    if gpg is None:
        raise SignatureError(
            f"allowedSigners {keyring} is an OpenPGP keyring but gpg is not installed "
            "(Debian: apt-get install gpg)"
        )
    home.chmod(0o700)
    try:
        done = subprocess.run(
            [gpg, "--batch", "--quiet", "--homedir", str(home), "--import", str(keyring)],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SignatureError(f"importing {keyring} timed out after {timeout:g}s") from None
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SignatureError(
            f"cannot read the OpenPGP keyring {keyring}: {detail[-1] if detail else 'gpg failed'}"
        )


# ----------------------------------------------------------------------- ancestry


def check_forward(git_dir: Path, old_sha: str, new_sha: str, timeout: float) -> None:
    """Refuse ``new_sha`` unless it is ``old_sha`` or a descendant of it (fast-forward).

    Raises :class:`SourceError` naming both short SHAs and the way out when the ref
    moved backwards, to a rewritten (diverged) history, or to an unrelated one; also
    when ``old_sha`` is not in ``git_dir`` (its ancestry cannot be proven).
    """
    if old_sha == new_sha:
        return
    old, new = old_sha[:12], new_sha[:12]
    forward = _is_ancestor(git_dir, old_sha, new_sha, timeout)
    if forward is True:
        return
    if forward is None:
        raise RewindRefused(
            f"refusing {new}: cannot prove it descends from the previous revision {old} "
            f"(not in the local mirror); {_WAY_BACK}"
        )
    if _is_ancestor(git_dir, new_sha, old_sha, timeout):
        raise RewindRefused(
            f"refusing {new}: the tracked ref moved backwards from {old} to an older "
            f"commit {new}; {_WAY_BACK}"
        )
    base = run_git(["merge-base", old_sha, new_sha], cwd=None, git_dir=git_dir, timeout=timeout)
    what = "a rewritten history" if base.status == 0 else "an unrelated history"
    raise RewindRefused(
        f"refusing {new}: the tracked ref moved from {old} to {what} ({new} does not "
        f"descend from {old}); {_WAY_BACK}"
    )


def _is_ancestor(git_dir: Path, ancestor: str, descendant: str, timeout: float) -> bool | None:
    """Whether ``ancestor`` is an ancestor of ``descendant``; ``None`` if it cannot be told."""
    result = run_git(
        ["merge-base", "--is-ancestor", ancestor, descendant],
        cwd=None,
        git_dir=git_dir,
        timeout=timeout,
    )
    if result.timed_out:
        raise SourceError(f"checking the ancestry of {descendant[:12]}: timed out")
    if result.status in (0, 1):
        return result.status == 0
    return None


@dataclass(frozen=True, slots=True)
class Guard:
    """What a commit must satisfy before it is materialized (default: nothing).

    :func:`reconciler.source.open_source` runs it between resolving the SHA and
    materializing its files.

    ``allowed_signers``: the commit must be signed by a key in this file.
    ``forward_from``: the commit must be this revision or descend from it (anti-rollback;
    ``None`` when rewinds are allowed or nothing was applied yet).
    """

    allowed_signers: Path | None = None
    forward_from: str | None = None

    @property
    def active(self) -> bool:
        return self.allowed_signers is not None or self.forward_from is not None

    def check(self, git_dir: Path, sha: str, timeout: float) -> None:
        if self.forward_from is not None:
            check_forward(git_dir, self.forward_from, sha, timeout)
        if self.allowed_signers is not None:
            verify_commit(git_dir, sha, self.allowed_signers, timeout)
