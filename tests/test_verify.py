"""Source security: signed commits and anti-rollback, against real repositories and a git daemon."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.gitserver import GIT_ENV, GitDaemon, git

from reconciler.errors import RewindRefused, SignatureError
from reconciler.source import Guard, check_forward, open_source, verify_commit

FLEET = {"fleet.yaml": "variables: {TZ: Europe/Berlin}\n", "devices/press-01.yaml": "stacks: []\n"}


def _keygen(path: Path) -> Path:
    """A fresh ed25519 key pair without passphrase; returns the private key path."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        timeout=30,
    )
    return path


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "keys"
    folder.mkdir()
    good, evil = _keygen(folder / "good"), _keygen(folder / "evil")
    allowed = folder / "allowed_signers"
    pub = (folder / "good.pub").read_text().strip()
    allowed.write_text(f"tester@plant.example {pub}\n")
    return {"good": good, "evil": evil, "allowed": allowed}


class Work:
    """A working repository that pushes (force included) into a bare repository that is served."""

    def __init__(self, path: Path, bare: Path) -> None:
        self.path = path
        git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=bare.parent)
        git("init", "--quiet", "--initial-branch=main", str(path), cwd=path.parent)
        git("remote", "add", "origin", str(bare), cwd=path)

    def commit(self, files: dict[str, str], key: Path | None = None, message: str = "c") -> str:
        for rel, text in files.items():
            (self.path / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.path / rel).write_text(text)
        git("add", "--all", cwd=self.path)
        sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"] if key else []
        git(*sign, "commit", "--quiet", "--allow-empty", *(["-S"] if key else []),
            "-m", message, cwd=self.path)  # fmt: skip
        return git("rev-parse", "HEAD", cwd=self.path)

    def push(self, force: bool = False) -> None:
        git(
            "push", "--quiet", *(["--force"] if force else []), "origin", "HEAD:main", cwd=self.path
        )

    def git_dir(self) -> Path:
        return self.path / ".git"


@pytest.fixture
def work(tmp_path: Path, served: Path) -> Work:
    return Work(tmp_path / "work", served / "fleet.git")


def _checkouts(cache: Path) -> list[str]:
    folder = cache / "checkouts"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


class TestVerifyCommit:
    """``verify_commit`` accepts only commits signed by a key in the allowed signers file."""

    def test_signed_by_allowed_key(self, work: Work, keys: dict[str, Path]) -> None:
        """A commit signed by an allowed key yields its signer's principal and fingerprint."""
        sha = work.commit(FLEET, keys["good"])
        signer = verify_commit(work.git_dir(), sha, keys["allowed"], 30)
        assert signer.format == "ssh"
        assert signer.principal == "tester@plant.example"
        assert signer.fingerprint.startswith("SHA256:")

    def test_unsigned(self, work: Work, keys: dict[str, Path]) -> None:
        """An unsigned commit is refused with a one-line reason naming the commit."""
        sha = work.commit(FLEET)
        with pytest.raises(SignatureError, match=rf"commit {sha[:12]} is not signed") as e:
            verify_commit(work.git_dir(), sha, keys["allowed"], 30)
        assert "\n" not in str(e.value)

    def test_unknown_key(self, work: Work, keys: dict[str, Path]) -> None:
        """A commit signed by a key that is not in the allowed signers file is refused."""
        sha = work.commit(FLEET, keys["evil"])
        with pytest.raises(SignatureError, match=r"signed by key SHA256:\S+, which is not in"):
            verify_commit(work.git_dir(), sha, keys["allowed"], 30)

    def test_tampered(self, work: Work, keys: dict[str, Path]) -> None:
        """A signed commit whose content was changed after signing has a bad signature."""
        sha = work.commit(FLEET, keys["good"])
        raw = git("cat-file", "commit", sha, cwd=work.path) + "\n"
        forged = work.path / "forged"
        forged.write_text(raw.replace("committer Fleet Tester", "committer Mallory", 1))
        bad = git("hash-object", "-t", "commit", "-w", str(forged), cwd=work.path)
        assert bad != sha
        with pytest.raises(SignatureError, match=r"bad signature"):
            verify_commit(work.git_dir(), bad, keys["allowed"], 30)

    def test_missing_allowed_signers(self, work: Work, tmp_path: Path) -> None:
        """A configured but missing allowed signers file refuses everything."""
        sha = work.commit(FLEET)
        with pytest.raises(SignatureError, match=r"does not exist"):
            verify_commit(work.git_dir(), sha, tmp_path / "nope", 30)


class TestSignedSource:
    """With ``allowed_signers``, ``open_source`` refuses a commit before any of its files exist."""

    def test_unsigned_refused_before_checkout(
        self, work: Work, daemon: GitDaemon, keys: dict[str, Path], tmp_path: Path
    ) -> None:
        """An unsigned head is refused and its checkout directory is never created."""
        work.commit(FLEET)
        work.push()
        cache = tmp_path / "cache"
        with pytest.raises(SignatureError, match="is not signed"):
            open_source(daemon.url("fleet.git"), cache, None, 30, allowed_signers=keys["allowed"])
        assert _checkouts(cache) == []

    def test_unknown_key_refused_before_checkout(
        self, work: Work, daemon: GitDaemon, keys: dict[str, Path], tmp_path: Path
    ) -> None:
        """A head signed by an unknown key is refused and nothing is checked out."""
        work.commit(FLEET, keys["evil"])
        work.push()
        cache = tmp_path / "cache"
        with pytest.raises(SignatureError, match="which is not in"):
            open_source(daemon.url("fleet.git"), cache, None, 30, allowed_signers=keys["allowed"])
        assert _checkouts(cache) == []

    def test_signed_is_checked_out(
        self, work: Work, daemon: GitDaemon, keys: dict[str, Path], tmp_path: Path
    ) -> None:
        """A head signed by an allowed key is checked out as usual."""
        sha = work.commit(FLEET, keys["good"])
        work.push()
        cache = tmp_path / "cache"
        checkout = open_source(
            daemon.url("fleet.git"), cache, None, 30, allowed_signers=keys["allowed"]
        )
        assert checkout.revision == sha
        assert (checkout.root / "devices" / "press-01.yaml").is_file()

    def test_local_repository_head(self, work: Work, keys: dict[str, Path], tmp_path: Path) -> None:
        """A local repository is read at its signed HEAD (never its edits); unsigned is refused."""
        work.commit(FLEET, keys["good"])
        cache = tmp_path / "cache"
        assert open_source(str(work.path), cache, allowed_signers=keys["allowed"]).revision
        (work.path / "fleet.yaml").write_text("variables: {}\n")
        checkout = open_source(str(work.path), cache, allowed_signers=keys["allowed"])
        assert (checkout.root / "fleet.yaml").read_text() == FLEET["fleet.yaml"]
        assert not checkout.dirty
        work.commit({})
        with pytest.raises(SignatureError, match="is not signed"):
            open_source(str(work.path), cache, allowed_signers=keys["allowed"])


class TestCheckForward:
    """The tracked ref may only move forward; rewinds and foreign histories are refused."""

    def test_equal_and_fast_forward(self, work: Work) -> None:
        """The same revision and a descendant both pass."""
        old = work.commit(FLEET)
        new = work.commit({"devices/press-02.yaml": "stacks: []\n"})
        check_forward(work.git_dir(), old, old, 30)
        check_forward(work.git_dir(), old, new, 30)

    def test_unrelated_history(self, work: Work) -> None:
        """A revision from an unrelated history is refused, naming both revisions."""
        old = work.commit(FLEET)
        git("checkout", "--quiet", "--orphan", "other", cwd=work.path)
        new = work.commit({"x": "y"})
        with pytest.raises(RewindRefused, match="unrelated history") as e:
            check_forward(work.git_dir(), old, new, 30)
        assert old[:12] in str(e.value) and new[:12] in str(e.value)

    def test_rewritten_history(self, work: Work) -> None:
        """An amended (diverged) revision is refused as a rewritten history."""
        work.commit(FLEET)
        old = work.commit({"a": "1"})
        git("commit", "--quiet", "--amend", "-m", "rewritten", cwd=work.path)
        new = git("rev-parse", "HEAD", cwd=work.path)
        with pytest.raises(RewindRefused, match="rewritten history"):
            check_forward(work.git_dir(), old, new, 30)

    def test_unknown_previous_revision(self, work: Work) -> None:
        """When the previous revision is not in the repository, ancestry cannot be proven."""
        new = work.commit(FLEET)
        with pytest.raises(RewindRefused, match="cannot prove"):
            check_forward(work.git_dir(), "0" * 40, new, 30)


class TestForcePush:
    """A force-push of the tracked branch to an older commit is refused at the source."""

    def test_rewind_via_git_daemon(self, work: Work, daemon: GitDaemon, tmp_path: Path) -> None:
        """The rewound head is refused with both short SHAs and the way out, and not checked out."""
        old = work.commit(FLEET)
        new = work.commit({"devices/press-02.yaml": "stacks: []\n"})
        work.push()
        url, cache = daemon.url("fleet.git"), tmp_path / "cache"
        assert open_source(url, cache, None, 30, forward_from=old).revision == new
        git("reset", "--quiet", "--hard", old, cwd=work.path)
        work.push(force=True)
        with pytest.raises(RewindRefused, match="moved backwards") as e:
            open_source(url, cache, None, 30, forward_from=new)
        message = str(e.value)
        assert new[:12] in message and old[:12] in message
        assert "allowRewind: true" in message and "fleetgate rollback" in message
        assert _checkouts(cache) == [new]
        assert open_source(url, cache, None, 30).revision == old  # no guard: allowRewind


class TestGuard:
    """An empty guard checks nothing; a full one checks ancestry and signature."""

    def test_active(self, keys: dict[str, Path]) -> None:
        """Only a guard with a signers file or a previous revision is active."""
        assert not Guard().active
        assert Guard(allowed_signers=keys["allowed"]).active
        assert Guard(forward_from="a" * 40).active


def _gpg(home: Path, *args: str) -> str:
    gpg = shutil.which("gpg")
    if gpg is None:
        raise RuntimeError("gpg is not installed (Debian: apt-get install gpg)")
    done = subprocess.run(
        [gpg, "--batch", "--quiet", "--homedir", str(home), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


class TestOpenPgp:
    """An OpenPGP keyring as ``allowedSigners`` allows exactly the keys it holds."""

    def test_gpg_signed(self, work: Work, tmp_path: Path) -> None:
        """A commit signed by a key of the keyring passes; one by another key is refused."""
        homes = {"good": tmp_path / "gnupg", "evil": tmp_path / "gnupg-other"}
        uids = {"good": "tester@plant.example", "evil": "mallory@evil.example"}
        try:
            for name, home in homes.items():
                home.mkdir(mode=0o700)
                _gpg(home, "--passphrase", "", "--quick-gen-key", uids[name], "ed25519", "sign")
            keyring = tmp_path / "allowed.asc"
            keyring.write_text(_gpg(homes["good"], "--armor", "--export"))
            shas = {
                name: self._signed_commit(work, name, homes[name], uids[name]) for name in homes
            }
            signer = verify_commit(work.git_dir(), shas["good"], keyring, 30)
            assert signer.format == "openpgp" and signer.fingerprint
            with pytest.raises(SignatureError, match="which is not in"):
                verify_commit(work.git_dir(), shas["evil"], keyring, 30)
        finally:
            for home in homes.values():  # the gpg-agent each home started
                subprocess.run(
                    ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                    check=False,
                    timeout=30,
                )

    @staticmethod
    def _signed_commit(work: Work, name: str, home: Path, uid: str) -> str:
        (work.path / name).write_text(name)
        env = {**os.environ, **GIT_ENV, "GNUPGHOME": str(home)}
        for args in (
            ["add", "--all"],
            ["-c", f"user.signingkey={uid}", "commit", "-q", "-S", "-m", name],
        ):
            subprocess.run(["git", *args], cwd=work.path, env=env, check=True, timeout=60)
        return git("rev-parse", "HEAD", cwd=work.path)
