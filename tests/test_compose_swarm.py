"""Swarm-only `deploy` keys in real files: restart_policy mapped as docker compose maps it,
placement / delay / window ignored with a warning (docker compose ignores them silently)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.manifests.tree import RepoTree
from reconciler.manifests.validate import check_fleet
from reconciler.render.desired import build_desired


def fleet(root: Path, deploy: str) -> Path:
    (root / "devices").mkdir(parents=True)
    (root / "devices" / "d1.yaml").write_text("stacks: [s]\n")
    (root / "stacks" / "s").mkdir(parents=True)
    (root / "stacks" / "s" / "compose.yaml").write_text(
        "services:\n  x:\n    image: x\n    deploy:\n" + deploy
    )
    return root


class TestRestartPolicy:
    @pytest.mark.parametrize(
        ("policy", "restart"),
        [
            ("{condition: on-failure}", "on-failure"),
            ("{condition: on-failure, max_attempts: 3}", "on-failure:3"),
            ("{condition: any}", "always"),
            ("{condition: none}", "no"),
            ("{condition: unless-stopped}", "unless-stopped"),
        ],
    )
    def test_restart_policy_becomes_the_container_restart(
        self, tmp_path: Path, policy: str, restart: str
    ) -> None:
        """deploy.restart_policy maps to the engine's restart policy as in docker compose."""
        root = fleet(tmp_path, f"      restart_policy: {policy}\n")
        state = build_desired(RepoTree(root), None, "d1", "/state")
        assert state.stacks[0].services[0].restart == restart

    def test_restart_policy_wins_over_restart(self, tmp_path: Path) -> None:
        """As in docker compose, deploy.restart_policy overrides the service's restart."""
        root = fleet(tmp_path, "      restart_policy: {condition: none}\n    restart: always\n")
        state = build_desired(RepoTree(root), None, "d1", "/state")
        assert state.stacks[0].services[0].restart == "no"

    def test_max_attempts_without_on_failure_is_an_error(self, tmp_path: Path) -> None:
        """max_attempts with condition any is refused at its line (the engine would refuse)."""
        root = fleet(
            tmp_path, "      restart_policy:\n        condition: any\n        max_attempts: 2\n"
        )
        (finding,) = check_fleet(RepoTree(root)).findings
        assert str(finding).startswith(
            "stacks/s/compose.yaml:7: services.x.deploy.restart_policy.max_attempts: "
            "only goes with condition: on-failure"
        )


class TestSwarmOnlyKeys:
    def test_placement_delay_and_window_warn_and_are_ignored(self, tmp_path: Path) -> None:
        """placement, delay and window are warnings at their lines; the fleet is valid."""
        root = fleet(
            tmp_path,
            "      placement: {constraints: [node.role == manager]}\n"
            "      restart_policy: {condition: on-failure, delay: 5s, window: 2m}\n",
        )
        result = check_fleet(RepoTree(root))
        assert result.valid
        assert [(f.line, f.severity, f.message.split(":")[0]) for f in result.findings] == [
            (5, "warning", "services.x.deploy.placement"),
            (6, "warning", "services.x.deploy.restart_policy.delay"),
            (6, "warning", "services.x.deploy.restart_policy.window"),
        ]

    def test_replicas_stays_refused(self, tmp_path: Path) -> None:
        """replicas would change what runs (several containers): still an error."""
        result = check_fleet(RepoTree(fleet(tmp_path, "      replicas: 2\n")))
        assert not result.valid
