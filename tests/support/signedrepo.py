"""A local fleet clone whose commits are SSH-signed, and the allowed signers file for it.

Used to test what a signed local-path repository reads (the verified commit, never the
working tree) with real ``git`` and ``ssh-keygen``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from support.gitserver import GIT_ENV, Origin, git


def keygen(path: Path) -> Path:
    """A fresh ed25519 key pair without passphrase; the private key path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        timeout=30,
    )
    return path


def allowed_signers(path: Path, key: Path) -> Path:
    """An OpenSSH allowed signers file allowing ``key`` for the test committer."""
    pub = key.with_suffix(".pub").read_text().strip()
    path.write_text(f"{GIT_ENV['GIT_COMMITTER_EMAIL']} {pub}\n")
    return path


class SignedRepo(Origin):
    """A non-bare repository whose commits are signed with ``key``."""

    def __init__(self, path: Path, key: Path) -> None:
        super().__init__(path)
        self.key = key
        git("config", "gpg.format", "ssh", cwd=path)
        git("config", "user.signingkey", str(key), cwd=path)
        git("config", "commit.gpgsign", "true", cwd=path)

    def hide(self, rel: str, text: str, how: str = "--skip-worktree") -> None:
        """Change tracked ``rel`` on disk and hide it from ``git status`` (``how``)."""
        git("update-index", how, "--", rel, cwd=self.path)
        (self.path / rel).write_text(text, encoding="utf-8")
        assert git("status", "--porcelain", cwd=self.path) == "", "the change is not hidden"


def signed_fleet(folder: Path, files: Mapping[str, str]) -> tuple[SignedRepo, Path, str]:
    """A signed repository with ``files`` committed: (repo, allowed signers file, HEAD)."""
    key = keygen(folder / "keys" / "release")
    allowed = allowed_signers(folder / "keys" / "allowed_signers", key)
    repo = SignedRepo(folder / "fleet", key)
    head = repo.commit(files, "signed fleet")
    return repo, allowed, head
