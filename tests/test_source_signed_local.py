"""A signed local-path repository is read at its verified commit, never from its working tree."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from support.gitserver import git
from support.signedrepo import signed_fleet

from reconciler.agent.config import AgentConfig
from reconciler.agent.source import AgentSource
from reconciler.cli import main
from reconciler.errors import SignatureError, SourceError
from reconciler.record import DeviceRecord
from reconciler.source import open_source

DEVICE = "devices/press-01.yaml"
STACK = "stacks/web/compose.yaml"
SIGNED = "services:\n  web:\n    image: busybox:signed\n"
HIDDEN = "services:\n  web:\n    image: evil.example/owned:1\n    privileged: true\n"
FLEET = {DEVICE: "stacks: [web]\n", STACK: SIGNED}


class TestSignedLocalPath:
    @pytest.mark.parametrize("how", ["--skip-worktree", "--assume-unchanged"])
    def test_hidden_edit_is_not_read(self, how: str, tmp_path: Path) -> None:
        """An edit hidden from git status is not what a signed local path reads."""
        repo, allowed, head = signed_fleet(tmp_path, FLEET)
        repo.hide(STACK, HIDDEN, how)
        checkout = open_source(str(repo.path), tmp_path / "cache", allowed_signers=allowed)
        assert checkout.revision == head
        assert (checkout.root / STACK).read_text() == SIGNED
        assert not checkout.root.is_relative_to(repo.path)

    def test_untracked_and_uncommitted_files_are_not_read(self, tmp_path: Path) -> None:
        """Plain edits and untracked files are ignored: only the signed commit's files exist."""
        repo, allowed, _ = signed_fleet(tmp_path, FLEET)
        (repo.path / STACK).write_text(HIDDEN)
        (repo.path / "devices" / "intruder.yaml").write_text("stacks: [web]\n")
        checkout = open_source(str(repo.path), tmp_path / "cache", allowed_signers=allowed)
        assert (checkout.root / STACK).read_text() == SIGNED
        assert not (checkout.root / "devices" / "intruder.yaml").exists()
        assert not checkout.dirty

    def test_unsigned_head_is_refused(self, tmp_path: Path) -> None:
        """A later unsigned commit on top is refused before anything is read."""
        repo, allowed, _ = signed_fleet(tmp_path, FLEET)
        git("-c", "commit.gpgsign=false", "commit", "--quiet", "--allow-empty", "-m", "x",
            cwd=repo.path)  # fmt: skip
        with pytest.raises(SignatureError, match="is not signed"):
            open_source(str(repo.path), tmp_path / "cache", allowed_signers=allowed)

    def test_folder_outside_git_is_refused(self, tmp_path: Path) -> None:
        """A plain folder has no signed commit, so with allowed signers it is refused."""
        _, allowed, _ = signed_fleet(tmp_path, FLEET)
        plain = tmp_path / "plain"
        (plain / "devices").mkdir(parents=True)
        with pytest.raises(SourceError, match="not a Git repository"):
            open_source(str(plain), tmp_path / "cache", allowed_signers=allowed)

    def test_unsigned_source_reads_the_working_tree(self, tmp_path: Path) -> None:
        """Without allowed signers the working tree is read and marked dirty (developer use).

        A guard on purpose: the developer workflow of validate/render must keep working.
        """
        repo, _, head = signed_fleet(tmp_path, FLEET)
        (repo.path / STACK).write_text(HIDDEN)
        checkout = open_source(str(repo.path), tmp_path / "cache")
        assert (checkout.root, checkout.revision, checkout.dirty) == (repo.path, head, True)


class TestConsumers:
    def test_agent_reads_the_signed_commit(self, tmp_path: Path) -> None:
        """The agent with ``repo: /path`` and allowedSigners converges toward the signed files."""
        repo, allowed, head = signed_fleet(tmp_path, FLEET)
        repo.hide(STACK, HIDDEN)
        config = AgentConfig(
            device="press-01",
            repo=str(repo.path),
            state_dir=tmp_path / "state",
            allowed_signers=allowed,
        )
        source = AgentSource(config, structlog.get_logger())
        refresh = source.refresh(DeviceRecord("press-01"), datetime.now(UTC))
        assert refresh.checkout is not None and refresh.refused is None
        assert refresh.checkout.revision == head
        assert (refresh.checkout.root / STACK).read_text() == SIGNED

    def test_render_reads_the_signed_commit(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """``render --allowed-signers`` shows the signed image, not the hidden one."""
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        repo, allowed, head = signed_fleet(tmp_path, FLEET)
        repo.hide(STACK, HIDDEN)
        args = ["render", "--device", "press-01", "--repo", str(repo.path)]
        code = main([*args, "--allowed-signers", str(allowed), "--output", "json"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "busybox:signed" in out and "evil.example" not in out
        assert json.loads(out)["revision"] == head

    @pytest.mark.docker
    def test_plan_reads_the_signed_commit(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``plan`` (the same source as ``apply``) plans the signed image, not the hidden one."""
        repo, allowed, _ = signed_fleet(tmp_path, FLEET)
        repo.hide(STACK, HIDDEN)
        code = main(
            ["plan", "--device", "press-01", "--repo", str(repo.path), "--allowed-signers",
             str(allowed), "--state-dir", str(tmp_path / "state"), "--output", "json"]
        )  # fmt: skip
        out = capsys.readouterr().out
        assert code == 0, out
        assert "busybox:signed" in out and "evil.example" not in out
