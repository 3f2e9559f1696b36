"""A full 40-hex ``--ref`` is a commit, never a branch or tag named like one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.gitserver import GitDaemon, Origin, git

from reconciler.errors import SourceError
from reconciler.source import open_source
from reconciler.source.bundle import create_bundle

DEVICE = "devices/press-01.yaml"
GOOD = {DEVICE: "stacks: []\n"}
NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
EVIL = {DEVICE: "labels: {owned: yes}\n"}


def _shadowed(origin: Origin) -> tuple[str, str]:
    """Commits ``good`` then ``evil``; a branch named like ``good``'s SHA points at ``evil``."""
    good = origin.commit(GOOD, "good")
    evil = origin.commit(EVIL, "evil")
    git("update-ref", f"refs/heads/{good}", evil, cwd=origin.path)
    return good, evil


@pytest.fixture
def origin(served: Path) -> Origin:
    return Origin(served / "fleet")


class TestFortyHexRef:
    def test_local_path_reads_the_commit(self, origin: Origin, tmp_path: Path) -> None:
        """A local --ref of 40 hex digits gives that commit even when a branch is named like it."""
        good, _ = _shadowed(origin)
        checkout = open_source(str(origin.path), tmp_path / "cache", ref=good)
        assert checkout.revision == good
        assert (checkout.root / "devices/press-01.yaml").read_text() == GOOD[
            "devices/press-01.yaml"
        ]

    def test_mirror_reads_the_commit(
        self, origin: Origin, daemon: GitDaemon, tmp_path: Path
    ) -> None:
        """A remote's branch named like a commit SHA does not redirect that SHA in the mirror."""
        good, _ = _shadowed(origin)
        checkout = open_source(daemon.url(origin.name), tmp_path / "cache", ref=good)
        assert checkout.revision == good
        assert (checkout.root / "devices/press-01.yaml").read_text() == GOOD[
            "devices/press-01.yaml"
        ]

    def test_a_tag_object_is_not_a_commit(self, origin: Origin, tmp_path: Path) -> None:
        """The SHA of an annotated tag object is refused: it names a tag, not a commit."""
        origin.commit(GOOD, "good")
        origin.tag("v1")
        tag_object = git("rev-parse", "refs/tags/v1", cwd=origin.path)
        with pytest.raises(SourceError, match=f"has no commit {tag_object}"):
            open_source(str(origin.path), tmp_path / "cache", ref=tag_object)

    def test_unknown_sha(self, origin: Origin, tmp_path: Path) -> None:
        """A 40-hex ref that is no commit of the repository is one clear refusal."""
        origin.commit(GOOD, "good")
        with pytest.raises(SourceError, match=r"has no commit 0{40}"):
            open_source(str(origin.path), tmp_path / "cache", ref="0" * 40)

    def test_bundle_create_refuses_a_branch_named_like_a_sha(
        self, origin: Origin, tmp_path: Path
    ) -> None:
        """``bundle create --ref <40-hex>`` is a commit, not the branch named like it: refused."""
        good, _ = _shadowed(origin)
        with pytest.raises(SourceError, match="40 hex digits name a commit"):
            create_bundle(origin.path, good, tmp_path / "x.bundle", NOW)
        assert not (tmp_path / "x.bundle").exists()
