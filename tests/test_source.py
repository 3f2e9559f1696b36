"""The Git source adapter against real servers on 127.0.0.1 (git daemon, smart HTTP)."""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import pytest
from support.gitserver import GitDaemon, Origin, SilentServer, SmartHttpServer, free_port, git

from reconciler.errors import SourceError
from reconciler.redaction import redact
from reconciler.source import cache_key, is_url, open_source, prune_checkouts, remote_head

FLEET_V1 = {
    "fleet.yaml": "variables: {TZ: Europe/Berlin}\n",
    "devices/press-01.yaml": "stacks: []\n",
}
FLEET_V2 = {"devices/press-02.yaml": "labels: {site: hannover}\n"}
SHA = re.compile(r"^[0-9a-f]{40}$")


@pytest.fixture
def origin(served: Path) -> Origin:
    repo = Origin(served / "fleet")
    repo.commit(FLEET_V1, "first fleet")
    return repo


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


class TestUrlRecognition:
    """Paths stay local; scheme URLs and scp-like ``host:path`` are remotes."""

    @pytest.mark.parametrize(
        "repo",
        ["git://h/x", "https://h/x.git", "ssh://git@h/x", "file:///srv/x", "git@h:plant/fleet"],
    )
    def test_urls(self, repo: str) -> None:
        """Git URLs of every supported scheme are recognised as remote."""
        assert is_url(repo)

    @pytest.mark.parametrize("repo", [".", "example-fleet-repo", "/srv/fleet", "./a:b"])
    def test_paths(self, repo: str) -> None:
        """Relative and absolute folders (even with a colon) are local paths."""
        assert not is_url(repo)


class TestRedaction:
    """Credentials in URLs never survive into text, a plain user (often a token) neither."""

    def test_https_token(self) -> None:
        """A user and password in an https URL are replaced by ***."""
        text = "cannot fetch https://user:s3cret@git.plant.example/fleet.git: boom"
        assert redact(text) == "cannot fetch https://***@git.plant.example/fleet.git: boom"

    def test_token_only(self) -> None:
        """A bare user (often a token) is redacted too."""
        assert redact("http://tok3n@h/x") == "http://***@h/x"

    def test_ssh_user_redacted(self) -> None:
        """The user of an ssh URL is redacted."""
        assert redact("ssh://git@h/x") == "ssh://***@h/x"

    def test_cache_key_ignores_credentials(self) -> None:
        """The cache folder of a URL depends on the repository, not on its credentials."""
        assert cache_key("https://a:b@h/x.git") == cache_key("https://h/x.git")
        assert cache_key("https://h/x.git") != cache_key("https://h/y.git")


class TestLocalPath:
    """A local directory is used as is, with HEAD as its revision when it is in Git."""

    def test_plain_directory(self, tmp_path: Path, cache: Path) -> None:
        """A folder outside Git is read in place with no revision."""
        (tmp_path / "fleet.yaml").write_text("{}\n")
        checkout = open_source(str(tmp_path), cache, None, 10)
        assert (checkout.root, checkout.revision) == (tmp_path, None)

    def test_git_working_tree(self, origin: Origin, cache: Path) -> None:
        """A clean Git working tree is read in place at its HEAD."""
        head = git("rev-parse", "HEAD", cwd=origin.path)
        checkout = open_source(str(origin.path), cache, None, 10)
        assert (checkout.root, checkout.revision, checkout.dirty) == (origin.path, head, False)

    def test_dirty_working_tree(self, origin: Origin, cache: Path) -> None:
        """Uncommitted changes mark the checkout dirty."""
        (origin.path / "fleet.yaml").write_text("variables: {TZ: UTC}\n")
        assert open_source(str(origin.path), cache, None, 10).dirty

    def test_ref_of_local_repo_is_materialized(self, origin: Origin, cache: Path) -> None:
        """A ref of a local repository is checked out as that commit, not the working tree."""
        first = git("rev-parse", "HEAD", cwd=origin.path)
        origin.commit(FLEET_V2)
        checkout = open_source(str(origin.path), cache, first, 10)
        assert checkout.revision == first
        assert (checkout.root / "fleet.yaml").is_file()
        assert not (checkout.root / "devices/press-02.yaml").exists()

    def test_missing_directory(self, tmp_path: Path, cache: Path) -> None:
        """A folder that does not exist is one SourceError."""
        with pytest.raises(SourceError, match="is not a directory"):
            open_source(str(tmp_path / "nope"), cache, None, 10)


class TestGitDaemon:
    """Over git://, the source clones, sees new commits and resolves refs to full SHAs."""

    def test_clone(self, origin: Origin, daemon: GitDaemon, cache: Path) -> None:
        """A git:// clone lands read-only under checkouts/<sha>."""
        head = git("rev-parse", "HEAD", cwd=origin.path)
        checkout = open_source(daemon.url("fleet"), cache, None, 30)
        assert checkout.revision == head
        assert checkout.root == cache / "checkouts" / head
        assert (checkout.root / "devices/press-01.yaml").read_text() == "stacks: []\n"
        assert not os.access(checkout.root / "fleet.yaml", os.W_OK) or os.geteuid() == 0
        assert not (checkout.root / "fleet.yaml").stat().st_mode & stat.S_IWUSR

    def test_fetch_sees_new_commit(self, origin: Origin, daemon: GitDaemon, cache: Path) -> None:
        """A new commit on the server is fetched into its own checkout."""
        first = open_source(daemon.url("fleet"), cache, None, 30)
        second_sha = origin.commit(FLEET_V2, "add press-02")
        assert remote_head(daemon.url("fleet"), None, 30) == second_sha
        second = open_source(daemon.url("fleet"), cache, None, 30)
        assert second.revision == second_sha != first.revision
        assert (second.root / "devices/press-02.yaml").is_file()
        assert not (first.root / "devices/press-02.yaml").exists()

    def test_branch_and_tag_resolve_to_full_sha(
        self, origin: Origin, daemon: GitDaemon, cache: Path
    ) -> None:
        """Branches, tags and full ref names resolve to full SHAs."""
        first = git("rev-parse", "HEAD", cwd=origin.path)
        origin.tag("v1")
        origin.branch("stable")
        origin.commit(FLEET_V2)
        url = daemon.url("fleet")
        assert open_source(url, cache, "stable", 30).revision == first
        assert open_source(url, cache, "v1", 30).revision == first
        assert open_source(url, cache, "refs/heads/stable", 30).revision == first
        assert remote_head(url, "v1", 30) == first
        assert SHA.match(remote_head(url, "main", 30))

    def test_known_sha_needs_no_network(self, origin: Origin, served: Path, cache: Path) -> None:
        """A SHA already fetched is opened with the server gone."""
        with GitDaemon(served) as server:
            url = server.url("fleet")
            sha = open_source(url, cache, None, 30).revision
        assert sha is not None
        assert open_source(url, cache, sha, 5).revision == sha

    def test_unknown_ref(self, origin: Origin, daemon: GitDaemon, cache: Path) -> None:
        """A ref the server lacks is one SourceError naming it."""
        with pytest.raises(SourceError, match="no branch, tag or commit 'nope'"):
            open_source(daemon.url("fleet"), cache, "nope", 30)

    def test_unknown_repository(self, daemon: GitDaemon, cache: Path) -> None:
        """A repository the server lacks is one SourceError naming its URL."""
        with pytest.raises(SourceError, match=re.escape(daemon.url("missing"))):
            open_source(daemon.url("missing"), cache, None, 30)

    def test_prune_keeps_what_is_asked(
        self, origin: Origin, daemon: GitDaemon, cache: Path
    ) -> None:
        """Pruning removes every checkout but the revisions asked to keep."""
        old = open_source(daemon.url("fleet"), cache, None, 30)
        origin.commit(FLEET_V2)
        new = open_source(daemon.url("fleet"), cache, None, 30)
        assert new.revision is not None and old.revision is not None
        assert prune_checkouts(cache, {new.revision}) == (old.revision,)
        assert new.root.is_dir() and not old.root.exists()


class TestSmartHttp:
    """Over smart HTTP, the source clones and fetches, with credentials kept secret."""

    def test_clone_and_fetch(self, origin: Origin, http: SmartHttpServer, cache: Path) -> None:
        """Smart HTTP clones and then fetches a newer commit."""
        first = open_source(http.url("fleet"), cache, None, 30)
        assert first.revision == git("rev-parse", "HEAD", cwd=origin.path)
        newer = origin.commit(FLEET_V2)
        assert open_source(http.url("fleet"), cache, None, 30).revision == newer

    def test_credentials_reach_server_but_not_disk(
        self, origin: Origin, served: Path, cache: Path
    ) -> None:
        """Credentials authenticate to the server but are never written to the cache."""
        with SmartHttpServer(served, username="fleet", password="t0ken-s3cret") as server:
            url = server.url("fleet", credentials="fleet:t0ken-s3cret")
            checkout = open_source(url, cache, None, 30)
            assert checkout.url is not None and "t0ken" not in checkout.url
            assert ("GET", "/fleet/info/refs", "fleet") in server.requests
            assert remote_head(url, None, 30) == checkout.revision
        for path in (cache / "mirrors").rglob("*"):
            if path.is_file():
                assert b"t0ken-s3cret" not in path.read_bytes(), path

    def test_wrong_credentials_are_redacted(
        self, origin: Origin, served: Path, cache: Path
    ) -> None:
        """A refused login is one line with the credentials redacted."""
        with SmartHttpServer(served, username="fleet", password="right") as server:
            url = server.url("fleet", credentials="fleet:wr0ng-s3cret")
            with pytest.raises(SourceError) as caught:
                open_source(url, cache, None, 30)
        message = str(caught.value)
        assert "wr0ng-s3cret" not in message
        assert f"http://***@127.0.0.1:{server.port}/fleet" in message
        assert "\n" not in message


class TestFailures:
    """Unreachable or hung servers become one-line SourceErrors without credentials."""

    def test_unreachable_server(self, cache: Path) -> None:
        """A refused connection is one redacted line starting with "cannot fetch"."""
        url = f"http://ops:hunter2@127.0.0.1:{free_port()}/fleet.git"
        with pytest.raises(SourceError) as caught:
            open_source(url, cache, None, 20)
        message = str(caught.value)
        assert "hunter2" not in message
        assert message.startswith("cannot fetch http://***@127.0.0.1:")
        assert "\n" not in message

    def test_unreachable_ls_remote(self) -> None:
        """Listing refs of an unreachable server is one SourceError."""
        url = f"git://127.0.0.1:{free_port()}/fleet"
        with pytest.raises(SourceError, match=re.escape(f"cannot list refs of {url}")):
            remote_head(url, None, 20)

    def test_hung_server_times_out(self, cache: Path) -> None:
        """A server that never answers times out after the given seconds."""
        with SilentServer() as server:
            url = f"git://127.0.0.1:{server.port}/fleet"
            started = time.monotonic()
            with pytest.raises(SourceError, match=r"timed out after 2s"):
                open_source(url, cache, None, 2)
            with pytest.raises(SourceError, match=r"timed out after 2s"):
                remote_head(url, None, 2)
            assert time.monotonic() - started < 20
