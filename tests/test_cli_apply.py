"""`fleetgate plan` and `fleetgate apply` as a user runs them: text or JSON, and exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.cliproc import fleetgate, target
from support.engine import ImageBuilder
from support.passes import FleetRepo

from reconciler.store import StateStore

SHA = re.compile(r"^[0-9a-f]{40}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def fleet(tmp_path: Path, device_id: str, busybox_image: str) -> FleetRepo:
    return FleetRepo(
        tmp_path / "fleet", device_id, APP_IMAGE=busybox_image, BROKER_IMAGE=busybox_image
    )


@pytest.mark.docker
class TestApplyCommand:
    """`apply` converges once and says what it did; exit 0 only when converged."""

    def test_converges_then_reports_nothing_to_do(self, fleet: FleetRepo, tmp_path: Path) -> None:
        """The first run lists its steps and succeeds; the second says nothing was needed."""
        first = fleetgate("apply", *target(fleet, tmp_path / "state"))
        assert first.returncode == 0, first.stderr
        lines = first.stdout.splitlines()
        assert lines[0] == f"device {fleet.device} -> {fleet.head}"
        assert "  create mqtt/broker: container missing" in lines
        assert lines[-1].startswith(f"succeeded: 12 step(s) applied toward {fleet.head}")
        second = fleetgate("apply", *target(fleet, tmp_path / "state"))
        assert second.returncode == 0
        assert second.stdout.splitlines()[-1] == "succeeded: already converged; nothing to do"

    def test_json_has_stable_fields(self, fleet: FleetRepo, tmp_path: Path) -> None:
        """`--output json` gives the documented fields, full SHAs and RFC 3339 UTC times."""
        done = fleetgate("apply", *target(fleet, tmp_path / "state"), "--output", "json")
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        assert set(data) == {
            "device", "outcome", "reason", "stage", "revision", "target", "update", "rollback",
            "findings", "applied_revision", "last_good_revision", "started_at", "finished_at",
            "next_window", "held_stacks", "dirty",
        }  # fmt: skip
        assert data["outcome"] == "succeeded" and data["dirty"] is False
        assert SHA.match(data["revision"]) and data["last_good_revision"] == data["revision"]
        assert TIME.match(data["started_at"]) and TIME.match(data["finished_at"])
        steps = data["update"]["steps"]
        assert {"kind": "create-network", "stack": "mqtt"}.items() <= steps[7].items()
        assert all(s["reason"] for s in steps)

    def test_failed_revision_exits_1_and_is_held(
        self, fleet: FleetRepo, tmp_path: Path, image_builder: ImageBuilder
    ) -> None:
        """A crashing revision rolls back (exit 1); applying it again only says why (exit 1)."""
        crash = image_builder.build("crash", 'FROM {base}\nENTRYPOINT ["sh", "-c", "exit 3"]\n')
        state = tmp_path / "state"
        assert fleetgate("apply", *target(fleet, state)).returncode == 0
        bad = fleet.commit(BROKER_IMAGE=crash)
        rolled = fleetgate("apply", *target(fleet, state))
        assert rolled.returncode == 1
        assert rolled.stdout.splitlines()[-1].startswith(
            f"rolled-back: revision {bad} failed: mqtt/broker: exited with code 3"
        )
        held = fleetgate("apply", *target(fleet, state))
        assert held.returncode == 1
        assert held.stdout.splitlines()[-1].startswith(
            f"failed-no-change: revision {bad} failed health before"
        )
        retried = fleetgate("apply", *target(fleet, state), "--retry")
        assert retried.returncode == 1 and "rolled-back:" in retried.stdout


class TestPlanCommand:
    """`plan` prints the steps with reasons and changes nothing."""

    @pytest.mark.docker
    def test_plan_lists_steps_then_nothing(self, fleet: FleetRepo, tmp_path: Path) -> None:
        """Before apply every step is listed with its reason; after apply there is nothing."""
        state = tmp_path / "state"
        before = fleetgate("plan", *target(fleet, state))
        assert before.returncode == 0, before.stderr
        assert " 12. start mqtt/broker: container missing" in before.stdout.splitlines()
        assert StateStore(state, fleet.device).load().last_attempted is None
        assert fleetgate("apply", *target(fleet, state)).returncode == 0
        after = fleetgate("plan", *target(fleet, state), "-o", "json")
        data = json.loads(after.stdout)
        assert data["steps"] == [] and data["revision"] == fleet.head


class TestUserErrors:
    """User mistakes are one line each, never a traceback."""

    def test_invalid_fleet_exits_1_with_file_and_line(self, tmp_path: Path) -> None:
        """An unsupported compose key is reported as path:line and nothing runs."""
        fleet = FleetRepo(tmp_path / "fleet", "dev1")
        fleet.write(
            "stacks/mqtt/compose.yaml", "services:\n  broker:\n    image: x\n    build: .\n"
        )
        fleet.commit()
        done = fleetgate("apply", *target(fleet, tmp_path / "state"))
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert re.search(r"^stacks/mqtt/compose\.yaml:4: .*build", done.stderr, re.MULTILINE)
        assert done.stdout.splitlines()[-1].startswith("rejected: stacks/mqtt/compose.yaml:4")

    @pytest.mark.parametrize(
        "args",
        [["--device", "Not_A_Device"], ["--device", "dev1", "--health-timeout", "soon"], []],
    )
    def test_usage_errors_exit_2(self, tmp_path: Path, args: list[str]) -> None:
        """A bad device id, duration or missing flag exits 2 with one line."""
        done = fleetgate("apply", "--repo", str(tmp_path), "--state-dir", str(tmp_path), *args)
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert len([ln for ln in done.stderr.splitlines() if ln.startswith("fleetgate:")]) == 1
