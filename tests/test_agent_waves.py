"""The agent follows its rollout wave: membership and pins from the head (real Git, file://)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import structlog
from support.gitserver import git as signed_git
from support.signedrepo import signed_fleet

from reconciler.agent.config import AgentConfig
from reconciler.agent.source import AgentSource
from reconciler.record import DeviceRecord

FLEET = """\
rollout:
  waves:
    - name: lab
      selector: {ring: lab}
    - name: production
      selector: {}
      soak: 5s
"""
COMPOSE = "services:\n  web:\n    image: busybox:{tag}\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def fleet(tmp_path: Path) -> tuple[Path, str]:
    repo = tmp_path / "fleet"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    first = commit(
        repo,
        {
            "fleet.yaml": FLEET,
            "devices/lab-1.yaml": "labels: {ring: lab}\nstacks: [web]\n",
            "devices/prod-1.yaml": "labels: {ring: prod}\nstacks: [web]\n",
            "stacks/web/compose.yaml": COMPOSE.format(tag="1"),
        },
        "release 1",
    )
    return repo, first


def refresh(tmp_path: Path, repo: Path, device: str, record: DeviceRecord | None = None):  # type: ignore[no-untyped-def]
    config = AgentConfig(device=device, repo=f"file://{repo}", state_dir=tmp_path / device)
    source = AgentSource(config, structlog.get_logger())
    return source.refresh(record or DeviceRecord(device), datetime.now(UTC))


def image(checkout_root: Path) -> str:
    return (checkout_root / "stacks/web/compose.yaml").read_text()


class TestAgentWaves:
    def test_lab_follows_the_head_production_waits_for_a_pin(self, tmp_path: Path) -> None:
        """Without a pin, the lab device gets the head and production keeps what it runs."""
        repo, first = fleet(tmp_path)
        lab = refresh(tmp_path, repo, "lab-1")
        assert lab.checkout is not None and lab.checkout.revision == first
        prod = refresh(tmp_path, repo, "prod-1")
        assert prod.checkout is None and prod.refused is None
        assert (
            prod.waiting
            == "wave production not started (no waves/production.yaml); nothing runs yet"
        )

    def test_production_renders_the_fleet_as_of_its_pin(self, tmp_path: Path) -> None:
        """A pinned wave gets the pinned commit's files while the head moved on."""
        repo, first = fleet(tmp_path)
        commit(
            repo,
            {"waves/production.yaml": f"revision: {first}\n"},
            f"promote production to {first}",
        )
        head = commit(repo, {"stacks/web/compose.yaml": COMPOSE.format(tag="2")}, "release 2")
        prod = refresh(tmp_path, repo, "prod-1")
        assert prod.checkout is not None and prod.checkout.revision == first
        assert "busybox:1" in image(prod.checkout.root)
        lab = refresh(tmp_path, repo, "lab-1")
        assert lab.checkout is not None and lab.checkout.revision == head
        assert "busybox:2" in image(lab.checkout.root)

    def test_pin_outside_the_history_is_refused(self, tmp_path: Path) -> None:
        """A pin that is no ancestor of the head is refused; nothing new is applied."""
        repo, _ = fleet(tmp_path)
        commit(repo, {"waves/production.yaml": f"revision: {'b' * 40}\n"}, "bogus pin")
        prod = refresh(tmp_path, repo, "prod-1")
        assert prod.checkout is None
        assert prod.refused is not None and "b" * 12 in prod.refused

    def test_unsigned_pin_is_refused_with_allowed_signers(self, tmp_path: Path) -> None:
        """With allowedSigners, a pin to an unsigned commit is refused like any unsigned commit."""
        files = {
            "fleet.yaml": FLEET,
            "devices/prod-1.yaml": "labels: {ring: prod}\nstacks: [web]\n",
            "stacks/web/compose.yaml": COMPOSE.format(tag="1"),
        }
        repo, allowed, _ = signed_fleet(tmp_path, files)
        repo.commit({"stacks/web/compose.yaml": COMPOSE.format(tag="evil")}, "x")
        signed_git("-c", "commit.gpgsign=false", "commit", "--quiet", "--amend", "-m", "unsigned",
                   cwd=repo.path)  # fmt: skip
        unsigned = signed_git("rev-parse", "HEAD", cwd=repo.path)
        head = repo.commit({"waves/production.yaml": f"revision: {unsigned}\n"}, "pin it")
        config = AgentConfig(
            device="prod-1",
            repo=f"file://{repo.path}",
            state_dir=tmp_path / "prod-1",
            allowed_signers=allowed,
        )
        got = AgentSource(config, structlog.get_logger()).refresh(
            DeviceRecord("prod-1"), datetime.now(UTC)
        )
        assert got.desired == head
        assert got.checkout is None
        assert got.refused is not None and "not signed" in got.refused
