"""Running git without GitPython (issue 13, point 4): the contract :func:`run_git` kept."""

from __future__ import annotations

import os
import time
from pathlib import Path

from reconciler.source.gitcmd import run_git


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status").read_text()
    return "\nState:\tZ" not in status  # a zombie waiting for its parent counts as gone


class TestRunGit:
    def test_a_timeout_kills_git_and_the_processes_it_started(self, tmp_path: Path) -> None:
        """A git command past its timeout comes back timed out within a second or two, and
        the process it started (as ssh or a remote helper would be) is killed with it
        (a regression guard: GitPython killed the children too)."""
        pidfile = tmp_path / "pid"
        slow = f"alias.slow=!sleep 30 & echo $! > {pidfile}; wait"
        started = time.monotonic()
        result = run_git(["-c", slow, "slow"], cwd=tmp_path, timeout=1.0)
        assert result.timed_out
        assert result.stderr.startswith("Timeout:")
        assert time.monotonic() - started < 10
        pid = int(pidfile.read_text())
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)

    def test_stdout_loses_one_trailing_newline_and_stderr_keeps_the_reason(
        self, tmp_path: Path
    ) -> None:
        """stdout comes back without its last newline and a failure keeps git's English
        message (a regression guard of what GitPython returned)."""
        failed = run_git(["rev-parse", "--git-dir"], cwd=tmp_path, timeout=10)
        assert failed.status != 0
        assert "not a git repository" in failed.stderr
        ok = run_git(["--version"], cwd=tmp_path, timeout=10)
        assert ok.status == 0
        assert ok.stdout.startswith("git version ")
        assert not ok.stdout.endswith("\n")
