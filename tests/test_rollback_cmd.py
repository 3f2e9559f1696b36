"""`fleetgate rollback`: the revert commit, its message, and one-line refusals."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import pytest
from support.gitserver import GIT_ENV, Origin, git

from reconciler.cli import rollback as rollback_cmd
from reconciler.errors import FleetgateError, SourceError, UsageError

FIXTURE = Path(__file__).parent / "fixtures" / "impact"


@pytest.fixture(autouse=True)
def _identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    repo = Origin(tmp_path / "fleet")
    shutil.copytree(FIXTURE, repo.path, dirs_exist_ok=True)
    repo.commit({}, "initial fleet")
    return repo


def bump(origin: Origin, path: str, old: str, new: str, message: str) -> str:
    text = (origin.path / path).read_text()
    return origin.commit({path: text.replace(old, new)}, message)


def rollback(origin: Origin, *argv: str) -> int:
    parser = argparse.ArgumentParser()
    rollback_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["rollback", *argv, "--repo", str(origin.path)])
    return rollback_cmd.run(args)


class TestRollback:
    def test_tree_equals_the_tree_before_rev(self, origin: Origin, capsys: Any) -> None:
        """Reverting HEAD makes a new commit whose tree equals the tree before HEAD."""
        before = git("rev-parse", "HEAD^{tree}", cwd=origin.path)
        bad = bump(origin, "stacks/plc/compose.yaml", "1.0.0", "6.6.6", "bump plc bridge")
        assert rollback(origin) == 0
        head = git("rev-parse", "HEAD", cwd=origin.path)
        assert capsys.readouterr().out.strip() == head
        assert git("rev-parse", "HEAD^{tree}", cwd=origin.path) == before
        assert git("rev-parse", "HEAD~1", cwd=origin.path) == bad
        message = git("log", "-1", "--format=%B", cwd=origin.path)
        assert message.startswith('Revert "bump plc bridge"')
        assert f"This reverts commit {bad}." in message
        assert "Devices whose desired state changes (2): a-press-1, b-press-1" in message

    def test_older_commit_keeps_later_ones(self, origin: Origin) -> None:
        """Reverting an older commit undoes only its change and keeps later commits."""
        bad = bump(origin, "stacks/web/compose.yaml", "1.25.3", "1.99.0", "bump web")
        bump(origin, "stacks/plc/plc.yaml", "100ms", "50ms", "faster polling")
        assert rollback(origin, bad) == 0
        assert "1.25.3" in (origin.path / "stacks/web/compose.yaml").read_text()
        assert "50ms" in (origin.path / "stacks/plc/plc.yaml").read_text()
        assert "(1): b-pack-1" in git("log", "-1", "--format=%B", cwd=origin.path)

    def test_dirty_tree_is_refused(self, origin: Origin) -> None:
        """Uncommitted changes are refused with one line naming the file; no commit is made."""
        bump(origin, "stacks/web/compose.yaml", "1.25.3", "1.99.0", "bump web")
        head = git("rev-parse", "HEAD", cwd=origin.path)
        (origin.path / "fleet.yaml").write_text("variables: {LOG_LEVEL: debug}\n")
        with pytest.raises(SourceError, match=r"uncommitted changes \(fleet.yaml\); commit"):
            rollback(origin)
        assert git("rev-parse", "HEAD", cwd=origin.path) == head

    def test_merge_commit_needs_mainline(self, origin: Origin) -> None:
        """A merge commit is refused without -m and reverted with -m 1."""
        before = git("rev-parse", "HEAD^{tree}", cwd=origin.path)
        git("checkout", "--quiet", "-b", "feature", cwd=origin.path)
        bump(origin, "stacks/web/compose.yaml", "1.25.3", "1.99.0", "bump web")
        git("checkout", "--quiet", "main", cwd=origin.path)
        git("merge", "--quiet", "--no-ff", "-m", "merge feature", "feature", cwd=origin.path)
        with pytest.raises(UsageError, match="is a merge commit; pass -m 1"):
            rollback(origin)
        assert rollback(origin, "-m", "1") == 0
        assert git("rev-parse", "HEAD^{tree}", cwd=origin.path) == before

    def test_unknown_revision(self, origin: Origin) -> None:
        """An unknown REV is one line naming it."""
        with pytest.raises(SourceError, match=r"unknown revision 'v9\.9'"):
            rollback(origin, "v9.9")

    def test_first_commit(self, origin: Origin) -> None:
        """The first commit has nothing to go back to."""
        with pytest.raises(FleetgateError, match="first commit"):
            rollback(origin)
