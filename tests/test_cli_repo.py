"""`--repo` may be a Git URL and `--ref` picks a revision, for validate and render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.gitserver import GitDaemon, Origin

from reconciler.cli import main

DEVICE = "devices/press-1.yaml"
STACK = "stacks/web/compose.yaml"


def _fleet(origin: Origin, image: str) -> str:
    return origin.commit(
        {
            DEVICE: "stacks: [web]\n",
            STACK: f"services:\n  web:\n    image: {image}\n",
        },
        f"web {image}",
    )


@pytest.fixture
def origin(served: Path) -> Origin:
    return Origin(served / "fleet")


class TestGitUrl:
    """validate and render read a fleet served over git:// like a local folder."""

    def test_validate_over_git_daemon(
        self,
        origin: Origin,
        daemon: GitDaemon,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A valid fleet served by git daemon validates with exit 0 and counts its device."""
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        _fleet(origin, "busybox:1")
        code = main(["validate", "--repo", daemon.url("fleet"), "--output", "json"])
        assert code == 0
        assert json.loads(capsys.readouterr().out)["devices"] == 1

    def test_render_at_an_older_ref(
        self,
        origin: Origin,
        daemon: GitDaemon,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`--ref` renders the named revision, with its full SHA, not the branch head."""
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        first = _fleet(origin, "busybox:1")
        _fleet(origin, "busybox:2")
        url = daemon.url("fleet")
        code = main(["render", "--device", "press-1", "--repo", url, "--ref", first, "-o", "json"])
        assert code == 0
        state = json.loads(capsys.readouterr().out)
        assert state["revision"] == first
        assert state["stacks"][0]["services"][0]["image"] == "busybox:1"

    def test_unreachable_url_is_one_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unreachable server is one line on stderr naming the URL, exit 1, no traceback."""
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        assert main(["validate", "--repo", "git://127.0.0.1:9/fleet"]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert "git://127.0.0.1:9/fleet" in err
        assert "Traceback" not in err
