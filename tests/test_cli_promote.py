"""`fleetgate promote` as a process over a real Git clone and status files (``--from DIR``)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.model import rfc3339

FLEET = """\
rollout:
  waves:
    - name: lab
      selector: {ring: lab}
    - name: production
      selector: {}
      soak: 1h
      maxFailed: 0
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def fleetgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
    env |= {"HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    (root / "devices").mkdir(parents=True)
    (root / "fleet.yaml").write_text(FLEET)
    (root / "devices/lab-1.yaml").write_text("labels: {ring: lab}\n")
    (root / "devices/lab-2.yaml").write_text("labels: {ring: lab}\n")
    (root / "devices/prod-1.yaml").write_text("labels: {ring: prod}\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "fleet with waves")
    return root


def report(folder: Path, device: str, applied: str, good_for: float, **extra: Any) -> None:
    now = datetime.now(UTC)
    folder.mkdir(exist_ok=True)
    doc = {
        "device": device,
        "applied_revision": applied,
        "last_good_revision": applied,
        "last_good_at": rfc3339(now - timedelta(seconds=good_for)),
        "heartbeat_at": rfc3339(now),
        "outcome": "succeeded",
        "reason": "",
        **extra,
    }
    (folder / f"{device}.json").write_text(json.dumps(doc))


class TestPromote:
    """The gate decides; a met gate commits the pin, an unmet one writes nothing."""

    def test_met_gate_commits_the_pin(self, repo: Path, tmp_path: Path) -> None:
        """Both lab devices soaked on HEAD: waves/production.yaml is committed with that SHA."""
        head = git(repo, "rev-parse", "HEAD")
        reports = tmp_path / "stick"
        report(reports, "lab-1", head, 7200)
        report(reports, "lab-2", head, 3700)
        done = fleetgate(
            "promote", "production", "--from", str(reports), "--repo", str(repo), cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert git(repo, "log", "-1", "--format=%s") == f"promote production to {head}"
        assert f"revision: {head}" in (repo / "waves/production.yaml").read_text()
        assert git(repo, "status", "--porcelain") == ""
        again = fleetgate(
            "promote", "production", "--from", str(reports), "--repo", str(repo), cwd=tmp_path
        )
        assert again.returncode == 0 and "already runs" in again.stderr

    def test_before_soak_exits_3_and_writes_nothing(self, repo: Path, tmp_path: Path) -> None:
        """A lab device 10 minutes into a 1h soak holds the gate: exit 3, it is named, no commit."""
        head = git(repo, "rev-parse", "HEAD")
        reports = tmp_path / "stick"
        report(reports, "lab-1", head, 7200)
        report(reports, "lab-2", head, 600)
        done = fleetgate(
            "promote", "production", "--from", str(reports), "--repo", str(repo), cwd=tmp_path
        )
        assert done.returncode == 3, done.stderr
        assert "device lab-2 has not soaked 1h" in done.stderr
        assert git(repo, "rev-parse", "HEAD") == head
        assert not (repo / "waves").exists()

    def test_rolled_back_device_refuses_and_force_says_so(self, repo: Path, tmp_path: Path) -> None:
        """A rolled-back lab device is named with its outcome; --force commits and says why."""
        head = git(repo, "rev-parse", "HEAD")
        reports = tmp_path / "stick"
        report(reports, "lab-1", head, 7200)
        report(reports, "lab-2", "0" * 40, 7200, outcome="rolled-back", reason="health gate failed")
        args = ["promote", "production", "--from", str(reports), "--repo", str(repo)]
        refused = fleetgate(*args, "--output", "markdown", cwd=tmp_path)
        assert refused.returncode == 3
        assert "lab-2 (rolled back: health gate failed)" in refused.stderr
        assert "| lab-2 | rolled-back |" in refused.stdout
        assert fleetgate(*args, "--force", cwd=tmp_path).returncode == 2
        forced = fleetgate(*args, "--force", "--reason", "hotfix approved by ops", cwd=tmp_path)
        assert forced.returncode == 0, forced.stderr
        body = git(repo, "log", "-1", "--format=%B")
        assert body.startswith(f"promote production to {head}")
        assert "FORCED past the promotion gate: hotfix approved by ops" in body

    def test_dry_run_and_json_write_nothing(self, repo: Path, tmp_path: Path) -> None:
        """--dry-run reports a met gate as JSON and leaves the clone as it was."""
        head = git(repo, "rev-parse", "HEAD")
        reports = tmp_path / "stick"
        report(reports, "lab-1", head, 7200)
        report(reports, "lab-2", head, 7200)
        args = ["promote", "production", "--from", str(reports), "--repo", str(repo)]
        done = fleetgate(*args, "--dry-run", "--output", "json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        verdict = json.loads(done.stdout)
        assert (verdict["met"], verdict["candidate_revision"]) == (True, head)
        assert [d["state"] for d in verdict["devices"]] == ["proved", "proved"]
        assert git(repo, "rev-parse", "HEAD") == head

    def test_pin_not_an_ancestor_is_refused(self, repo: Path, tmp_path: Path) -> None:
        """A pin to a commit outside the branch's history is one finding with file and line."""
        (repo / "waves").mkdir()
        (repo / "waves/production.yaml").write_text(f"revision: {'b' * 40}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "hand-written pin")
        reports = tmp_path / "stick"
        reports.mkdir()
        done = fleetgate(
            "promote", "production", "--from", str(reports), "--repo", str(repo), cwd=tmp_path
        )
        assert done.returncode == 1
        assert (
            "waves/production.yaml:1: wave production: revision bbbbbbbbbbbb is not an ancestor"
            in done.stderr
        )
        assert "Traceback" not in done.stderr
        checked = fleetgate("validate", "--repo", str(repo), cwd=tmp_path)
        assert checked.returncode == 1
        assert "waves/production.yaml:1: wave production: revision bbbbbbbbbbbb" in checked.stdout


class TestFleetStatusWaves:
    def test_fleet_status_shows_waves_and_the_next_gate(self, repo: Path, tmp_path: Path) -> None:
        """fleet status names each device's wave and, per wave, its revision and gate."""
        head = git(repo, "rev-parse", "HEAD")
        reports = tmp_path / "stick"
        report(reports, "lab-1", head, 7200)
        report(reports, "lab-2", head, 60)
        done = fleetgate(
            "fleet", "status", "--from", str(reports), "--repo", str(repo), "--output", "json",
            "--stale-after", "1h", cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        assert {d["device"]: d["wave"] for d in document["devices"]} == {
            "lab-1": "lab", "lab-2": "lab", "prod-1": "production",
        }  # fmt: skip
        lab, production = document["waves"]
        assert (lab["wave"], lab["revision"], lab["running"]) == ("lab", head, 2)
        assert (production["started"], production["promotion"]["gate_met"]) == (False, False)
        assert production["promotion"]["soak_left"] == "59m"
        assert any("lab-2 has not soaked 1h" in r for r in production["promotion"]["reasons"])

    def test_text_output_has_a_line_per_wave(self, repo: Path, tmp_path: Path) -> None:
        """The text table ends with the rollout waves: revision, devices on it, the gate."""
        head = git(repo, "rev-parse", "HEAD")
        reports = tmp_path / "stick"
        report(reports, "lab-1", head, 7200)
        report(reports, "lab-2", head, 60)
        done = fleetgate(
            "fleet", "status", "--from", str(reports), "--repo", str(repo),
            "--stale-after", "1h", cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"wave lab: revision {head[:12]}, 2 of 2 devices run it" in done.stdout
        assert (
            f"wave production: not started, 0 of 1 devices run it; promotion to {head[:12]}: "
            "the gate does not hold (59m of soak left): "
        ) in done.stdout
        assert "lab-2 has not soaked 1h" in done.stdout

    def test_lab_on_the_promotion_commit_still_runs_the_release(
        self, repo: Path, tmp_path: Path
    ) -> None:
        """After a promotion the lab takes the pin-only commit from the branch: the fleet view
        counts it as running the promoted release, and the promotion as done."""
        release = git(repo, "rev-parse", "HEAD")
        reports = tmp_path / "stick"
        report(reports, "lab-1", release, 7200)
        report(reports, "lab-2", release, 7200)
        promoted = fleetgate(
            "promote", "production", "--from", str(reports), "--repo", str(repo), cwd=tmp_path
        )
        assert promoted.returncode == 0, promoted.stderr
        pin_commit = git(repo, "rev-parse", "HEAD")
        report(reports, "lab-1", pin_commit, 7200)
        report(reports, "lab-2", pin_commit, 7200)
        report(reports, "prod-1", release, 60)
        done = fleetgate(
            "fleet", "status", "--from", str(reports), "--repo", str(repo), "--output", "json",
            "--stale-after", "1h", cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        lab, production = json.loads(done.stdout)["waves"]
        assert (lab["revision"], lab["running"]) == (release, 2)
        assert (production["revision"], production["running"]) == (release, 1)
        assert production["promotion"]["already"] is True


class TestReviewWaves:
    def test_impact_names_wave_and_when_it_lands(self, repo: Path, tmp_path: Path) -> None:
        """impact says the lab gets a change now and production at a promotion."""
        base = git(repo, "rev-parse", "HEAD")
        for device in ("lab-1", "prod-1"):
            labels = "ring: lab" if device == "lab-1" else "ring: prod"
            (repo / f"devices/{device}.yaml").write_text(f"labels: {{{labels}}}\nstacks: [s]\n")
        (repo / "stacks/s").mkdir(parents=True)
        (repo / "stacks/s/compose.yaml").write_text("services:\n  x:\n    image: x\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "a stack for lab-1 and prod-1")
        done = fleetgate(
            "impact", base, "HEAD", "--repo", str(repo), "--output", "json", cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        lands = {d["device"]: (d["wave"], d["lands"]) for d in json.loads(done.stdout)["devices"]}
        assert lands == {"lab-1": ("lab", "now"), "prod-1": ("production", "at promotion")}
        text = fleetgate("impact", base, "HEAD", "--repo", str(repo), cwd=tmp_path).stdout
        assert "wave production: lands at promotion" in text

    def test_history_lists_promotions(self, repo: Path, tmp_path: Path) -> None:
        """history shows each promotion with its wave, target and whether it was forced."""
        head = git(repo, "rev-parse", "HEAD")
        reports = tmp_path / "stick"
        reports.mkdir()
        args = ["promote", "production", "--from", str(reports), "--repo", str(repo)]
        assert fleetgate(*args, "--force", "--reason", "test", cwd=tmp_path).returncode == 0
        done = fleetgate(
            "history", "--device", "prod-1", "--repo", str(repo), "--output", "json", cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        (move,) = json.loads(done.stdout)["promotions"]
        assert (move["wave"], move["to"], move["forced"]) == ("production", head, True)
