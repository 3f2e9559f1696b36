"""Hostile corpus, `impact` of a pin change: a bad pin in a commit under review is one
`file:line:` line (exit 1), never a traceback, and a bad pin at BASE does not block the
review of the commit that fixes it. Each case fails on the code before pin changes were
assessed (it ignored waves/ and printed "no device's desired state changes", exit 0)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.hostile import Case, check_outcome, run_fleetgate, write_files

FLEET = """\
rollout:
  waves:
    - name: lab
      selector: {ring: lab}
    - name: production
      selector: {}
"""
RELEASE = {
    "fleet.yaml": FLEET,
    "devices/lab-1.yaml": "labels: {ring: lab}\nstacks: [app]\n",
    "devices/press-1.yaml": "labels: {ring: prod}\nstacks: [app]\n",
    "stacks/app/compose.yaml": "services:\n  app:\n    image: registry.example/app:1\n",
}
UNKNOWN = "deadbeef" * 5  # 40 hex digits, no such commit
FIRST = "{first}"  # replaced by the first commit's SHA

CASES = [
    Case(
        name="pin-to-no-commit",
        files={"waves/production.yaml": f"revision: {UNKNOWN}\n"},
        expect=("waves/production.yaml:1:", "cannot be read", "pin a commit of the branch"),
    ),
    Case(
        name="pin-with-escape-sequence",
        files={"waves/production.yaml": 'revision: "abc\\x1b[31mred"\n'},
        expect=("waves/production.yaml:1:", "U+001B", "HEAD is invalid"),
    ),
    Case(
        name="fixing-a-pin-that-named-no-commit",
        files={"waves/production.yaml": f"revision: {UNKNOWN}\n"},
        expect=("shown as not started", "device press-1 added", "registry.example/app:1"),
        exit_code=0,
    ),
]


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, files: dict[str, str | bytes], message: str) -> str:
    write_files(repo, files)
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


class TestImpactPinCorpus:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """A commit that moves a pin to something hostile (or away from it) is reviewed
        with one clear line naming the pin file, quickly and without a traceback."""
        repo = tmp_path / "repo"
        repo.mkdir()
        git(repo, "init", "--quiet", "--initial-branch=main")
        first = commit(repo, dict(RELEASE), "release 1")
        commit(repo, case.files, "the pin under review")
        if case.exit_code == 0:  # the bad pin is BASE; the commit under review fixes it
            commit(repo, {"waves/production.yaml": f"revision: {first}\n"}, "fix the pin")
        outcome = run_fleetgate(["impact", "HEAD~1", "HEAD", "--repo", str(repo)], tmp_path)
        check_outcome(case, outcome)
