"""Compose ``profiles`` selected per device (device and group ``profiles:``), as compose-go."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support.compose import DOCKER_COMPOSE

from reconciler.manifests.repository import load_repository
from reconciler.manifests.tree import RepoTree
from reconciler.render.device import render_device

COMPOSE = """\
services:
  app:
    image: app:1
  infer:
    image: ollama/ollama:0.5
    profiles: [gpu]
    depends_on: [app]
  debug:
    image: busybox:1
    profiles: [debug, support]
"""

DEVICES = {
    "plain": "stacks: [s]\n",
    "gpu": "stacks: [s]\nprofiles: [gpu]\n",
    "both": "stacks: [s]\nprofiles: [gpu]\nlabels: {ring: canary}\n",
    "every": "stacks: [s]\nprofiles: ['*']\n",
}
GROUP = "selector: {ring: canary}\nprofiles: [support]\n"
PROFILES = {"plain": "", "gpu": "gpu", "both": "gpu,support", "every": "*"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    (root / "stacks" / "s").mkdir(parents=True)
    (root / "stacks" / "s" / "compose.yaml").write_text(COMPOSE)
    (root / "devices").mkdir()
    for name, text in DEVICES.items():
        (root / "devices" / f"{name}.yaml").write_text(text)
    (root / "groups").mkdir()
    (root / "groups" / "canary.yaml").write_text(GROUP)
    return root


def compose_go_services(root: Path, profiles: str) -> set[str]:
    out = subprocess.run(
        [str(DOCKER_COMPOSE), "-f", "compose.yaml", "config", "--format", "json"],
        cwd=root / "stacks" / "s",
        env={"PATH": "/usr/bin:/bin", "COMPOSE_PROFILES": profiles},
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout)["services"])


class TestProfiles:
    def test_each_device_runs_what_compose_profiles_would(self, fleet: Path) -> None:
        """Devices in one render (one cache) get the services COMPOSE_PROFILES selects."""
        tree = RepoTree(fleet)
        repo, findings = load_repository(tree)
        assert not findings
        for device, profiles in PROFILES.items():
            state = render_device(repo, tree, device, state_dir="/s").state
            ours = {svc.service for svc in state.stacks[0].services}
            assert ours == compose_go_services(fleet, profiles), device

    def test_group_profiles_add_to_the_device_ones(self, fleet: Path) -> None:
        """A matching group's profiles are enabled too (both: gpu from the device, support)."""
        tree = RepoTree(fleet)
        repo, _ = load_repository(tree)
        state = render_device(repo, tree, "both", state_dir="/s").state
        assert {s.service for s in state.stacks[0].services} == {"app", "infer", "debug"}
