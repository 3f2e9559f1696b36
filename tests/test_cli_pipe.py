"""A reader that closes the pipe early (``fleetgate ... | head``) ends a command quietly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.gitserver import git

DEVICE = "pipe-d1"
QUIET_EXITS = (0, 141)  # 141: 128 + SIGPIPE, what a shell reports for a cut pipe


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    """A two-commit fleet: one device whose stack's image changes in the second commit."""
    root = tmp_path / "fleet"
    (root / "devices").mkdir(parents=True)
    (root / "stacks/s").mkdir(parents=True)
    (root / f"devices/{DEVICE}.yaml").write_text("stacks: [s]\n")
    (root / "stacks/s/compose.yaml").write_text("services:\n  x:\n    image: busybox:1.36\n")
    git("init", "-q", "-b", "main", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "first", cwd=root)
    (root / "stacks/s/compose.yaml").write_text("services:\n  x:\n    image: busybox:1.37\n")
    git("commit", "-qam", "bump", cwd=root)
    return root


def _cut_pipe(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run fleetgate with stdout a pipe whose reader is already gone; (exit code, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader goes away before the first byte
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def _status_files(folder: Path) -> Path:
    folder.mkdir()
    document = {"device": DEVICE, "outcome": "succeeded", "applied_revision": None}
    (folder / f"{DEVICE}.json").write_text(json.dumps(document))
    return folder


class TestClosedPipe:
    @pytest.mark.parametrize(
        "command",
        [
            ["render", "--device", DEVICE, "--repo", "{repo}", "-o", "json"],
            ["render", "--device", DEVICE, "--repo", "{repo}"],
            ["validate", "--repo", "{repo}", "-o", "json"],
            ["impact", "--repo", "{repo}", "HEAD~1", "HEAD", "-o", "json"],
            ["impact", "--repo", "{repo}", "HEAD~1", "HEAD"],
            ["status", "--device", DEVICE, "--state-dir", "{state}", "-o", "json"],
            ["fleet", "status", "--from", "{reports}", "--repo", "{repo}", "-o", "json"],
            ["fleet", "status", "--from", "{reports}", "--repo", "{repo}"],
        ],
        ids=lambda c: "-".join(w for w in c if not w.startswith(("{", "-")) and w != DEVICE),
    )
    def test_command_exits_quietly(self, command: list[str], fleet: Path, tmp_path: Path) -> None:
        """No traceback and nothing on stderr; the exit code is 0 or 141."""
        reports = _status_files(tmp_path / "reports")
        values = {
            "{repo}": str(fleet),
            "{state}": str(tmp_path / "state"),
            "{reports}": str(reports),
        }
        code, err = _cut_pipe([values.get(w, w) for w in command], tmp_path)
        assert err == "", err
        assert code in QUIET_EXITS

    @pytest.mark.docker
    @pytest.mark.parametrize("output", ["json", "text"])
    def test_plan_exits_quietly(self, output: str, fleet: Path, tmp_path: Path) -> None:
        """``fleetgate plan | head`` on a real engine: no traceback, nothing on stderr."""
        args = ["plan", "--device", DEVICE, "--repo", str(fleet), "-o", output,
                "--state-dir", str(tmp_path / "state")]  # fmt: skip
        code, err = _cut_pipe(args, tmp_path)
        assert err == "", err
        assert code in QUIET_EXITS
