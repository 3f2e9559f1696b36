"""The validated-revision memo (reconciler/validated.py) on real repositories and a real render.

A pass with ``remember=True`` (what ``fleetgate apply`` runs) keeps the desired state
that passed every check; the next pass over the same tree reuses it. Whether a pass
validated is read from its log events (``validated.remembered``) and from the memo
file, never by replacing fleetgate code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs
from support.passes import DEVICE, FleetRepo, ImageRuntime, run_pass

from reconciler import cli, validated
from reconciler.manifests.tree import RepoTree
from reconciler.render import device as render_device


@pytest.fixture
def fleet(tmp_path: Path) -> FleetRepo:
    return FleetRepo(tmp_path / "fleet", DEVICE)


def remembered(logs: list[dict[str, object]]) -> bool:
    return any(e["event"] == "validated.remembered" for e in logs)


def memo(state: Path) -> Path:
    return validated.memo_path(state, DEVICE)


class TestMemo:
    def test_unchanged_tree_is_not_validated_again(self, fleet: FleetRepo, tmp_path: Path) -> None:
        """The second pass over the same tree takes the remembered state and still converges."""
        state, runtime = tmp_path / "state", ImageRuntime()
        with capture_logs() as first:
            assert run_pass(fleet, runtime, state, remember=True).outcome == "succeeded"
        assert not remembered(first) and memo(state).is_file()
        assert memo(state).stat().st_mode & 0o777 == 0o600
        with capture_logs() as second:
            result = run_pass(fleet, runtime, state, remember=True)
        assert (result.outcome, result.reason) == ("succeeded", "already converged; nothing to do")
        assert remembered(second)

    def test_without_remember_nothing_is_kept(self, fleet: FleetRepo, tmp_path: Path) -> None:
        """The agent and the tests that do not ask for the memo leave no memo file."""
        run_pass(fleet, ImageRuntime(), tmp_path / "state")
        assert not memo(tmp_path / "state").exists()

    def test_changed_tree_is_validated_in_full(self, fleet: FleetRepo, tmp_path: Path) -> None:
        """An uncommitted edit (same revision) misses the memo and its change is applied."""
        state, runtime = tmp_path / "state", ImageRuntime()
        run_pass(fleet, runtime, state, remember=True)
        variables = {**fleet.variables, "GREETING": "servus"}
        fleet.write("fleet.yaml", yaml.safe_dump({"variables": variables}))
        with capture_logs() as logs:
            result = run_pass(fleet, runtime, state, remember=True)
        assert result.outcome == "succeeded", result.reason
        assert not remembered(logs)
        assert result.update is not None and result.update.done  # the broker was recreated

    def test_bad_manifest_never_passes_through_the_memo(
        self, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """A manifest broken after a good pass, at the same revision, is rejected with its line."""
        state, runtime = tmp_path / "state", ImageRuntime()
        run_pass(fleet, runtime, state, remember=True)
        kept = memo(state).read_bytes()
        fleet.write(f"devices/{DEVICE}.yaml", "stacks: [app, mqtt]\nprivileged: yes-please\n")
        result = run_pass(fleet, runtime, state, remember=True)
        assert result.outcome == "rejected"
        assert any(f"devices/{DEVICE}.yaml:2" in str(f) for f in result.findings), result.findings
        assert memo(state).read_bytes() == kept  # a rejected tree is never remembered

    def test_corrupt_memo_is_ignored_with_one_log_line(
        self, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """A damaged memo file is logged once, the pass validates in full and rewrites it."""
        state, runtime = tmp_path / "state", ImageRuntime()
        run_pass(fleet, runtime, state, remember=True)
        for damage in (b"\x00garbage{", b'{"version": 1, "key": "x"'):
            memo(state).write_bytes(damage)
            with capture_logs() as logs:
                result = run_pass(fleet, runtime, state, remember=True)
            assert result.outcome == "succeeded", result.reason
            unreadable = [e for e in logs if e["event"] == "validated.unreadable"]
            assert len(unreadable) == 1 and not remembered(logs)
            assert memo(state).read_bytes() != damage

    def test_matching_key_with_damaged_state_is_ignored(
        self, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """A memo whose key matches but whose state does not parse is a miss, not a crash."""
        state, runtime = tmp_path / "state", ImageRuntime()
        run_pass(fleet, runtime, state, remember=True)
        text = memo(state).read_text()
        memo(state).write_text(text.replace('"stacks":', '"stacks_":', 1))
        with capture_logs() as logs:
            assert run_pass(fleet, runtime, state, remember=True).outcome == "succeeded"
        assert [e["event"] for e in logs].count("validated.unreadable") == 1

    def test_key_covers_device_policy_state_dir_and_fifo(
        self, fleet: FleetRepo, tmp_path: Path
    ) -> None:
        """Another device, state dir or tree gives another key; a FIFO is hashed, never opened."""
        tree = RepoTree(fleet.path)
        base = validated.memo_key(tree, fleet.head, DEVICE, "/s", None)
        assert base == validated.memo_key(RepoTree(fleet.path), fleet.head, DEVICE, "/s", None)
        assert base != validated.memo_key(tree, fleet.head, "dev2", "/s", None)
        assert base != validated.memo_key(tree, fleet.head, DEVICE, "/t", None)
        assert base != validated.memo_key(tree, None, DEVICE, "/s", None)
        os.mkfifo(fleet.path / "stacks" / "pipe")
        assert base != validated.memo_key(RepoTree(fleet.path), fleet.head, DEVICE, "/s", None)

    def test_cli_default_state_dir_matches_the_render_stage(self) -> None:
        """The --state-dir help shows the render stage's default (kept apart to stay lazy)."""
        assert cli.DEFAULT_STATE_DIR == render_device.DEFAULT_STATE_DIR
