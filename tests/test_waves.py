"""Rollout waves (pure): declaring waves and pins in Git, and the promotion gate."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.decide.waves import Evidence, gate
from reconciler.manifests.repository import load_repository
from reconciler.manifests.tree import RepoTree
from reconciler.manifests.validate import validate_fleet
from reconciler.manifests.waves import load_rollout, membership
from reconciler.model import rfc3339

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CAND = "c" * 40
OLD = "a" * 40
WAVES = """\
rollout:
  waves:
    - name: lab
      selector: {ring: lab}
    - name: production
      selector: {}
      soak: 1h
      maxFailed: 1
"""


def write(root: Path, files: dict[str, str]) -> RepoTree:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    return RepoTree(root)


def status(
    device: str,
    applied: str | None = CAND,
    outcome: str = "succeeded",
    good_for: float = 7200.0,
    said_ago: float = 10.0,
    **extra: Any,
) -> dict[str, Any]:
    said = NOW - timedelta(seconds=said_ago)
    return {
        "device": device,
        "applied_revision": applied,
        "last_good_revision": applied,
        "last_good_at": rfc3339(said - timedelta(seconds=good_for)),
        "outcome": outcome,
        "reason": "",
        "heartbeat_at": rfc3339(said),
        "failed_revisions": [],
        **extra,
    }


def verdict(evidence: list[Evidence], soak: float = 3600.0, max_failed: int = 0) -> Any:
    return gate(
        wave="production",
        previous="lab",
        candidate=CAND,
        soak=soak,
        max_failed=max_failed,
        evidence=evidence,
        now=NOW,
        stale_after=900.0,
    )


class TestDeclaringWaves:
    """rollout.waves and waves/*.yaml load into a Rollout, every problem with its line."""

    def test_first_matching_wave_wins_and_pins_are_read(self, tmp_path: Path) -> None:
        """A device is in the first wave its labels match; a later wave's pin is its revision."""
        tree = write(
            tmp_path,
            {
                "fleet.yaml": WAVES,
                "devices/l1.yaml": "labels: {ring: lab}\n",
                "devices/p1.yaml": "labels: {ring: prod}\n",
                "waves/production.yaml": f"revision: {OLD}\n",
            },
        )
        repo, findings = load_repository(tree)
        rollout, more = load_rollout(tree, repo)
        assert (findings, more) == ((), [])
        assert membership(rollout, repo) == {"l1": "lab", "p1": "production"}
        assert rollout.pin("production") == OLD
        assert rollout.pin("lab") is None
        assert rollout.wave("production").soak == 3600.0  # type: ignore[union-attr]

    def test_device_in_no_wave_is_a_finding_at_its_file(self, tmp_path: Path) -> None:
        """With rollout declared, a device no selector matches is named at its own file."""
        fleet = WAVES.replace("selector: {}", "selector: {ring: prod}")
        tree = write(tmp_path, {"fleet.yaml": fleet, "devices/x.yaml": "labels: {ring: qa}\n"})
        found = [str(f) for f in validate_fleet(tree)]
        assert len(found) == 1
        assert found[0].startswith("devices/x.yaml:1: device x is in no rollout wave")

    def test_bad_pins_and_soak_are_findings(self, tmp_path: Path) -> None:
        """Short SHAs, pins of unknown or first waves and bad soaks are each one finding."""
        tree = write(
            tmp_path,
            {
                "fleet.yaml": WAVES.replace("soak: 1h", "soak: 1 day"),
                "waves/production.yaml": "revision: abc123\n",
                "waves/lab.yaml": f"revision: {OLD}\n",
                "waves/qa.yaml": f"revision: {OLD}\n",
            },
        )
        found = "\n".join(str(f) for f in validate_fleet(tree))
        assert "fleet.yaml:7: soak: '1 day' is not a duration" in found
        assert "waves/production.yaml:1: revision 'abc123' is not a full 40-hex commit SHA" in found
        assert "waves/lab.yaml:1: wave 'lab' is the first wave" in found
        assert "waves/qa.yaml:1: no wave 'qa'" in found

    def test_no_rollout_means_no_waves(self, tmp_path: Path) -> None:
        """Without rollout, devices need no wave and there is nothing to promote."""
        tree = write(tmp_path, {"devices/x.yaml": "labels: {ring: qa}\n"})
        repo, _ = load_repository(tree)
        rollout, findings = load_rollout(tree, repo)
        assert (rollout.declared, findings) == (False, [])


class TestGate:
    """The gate names every device that holds a promotion back, and why."""

    def test_soaked_healthy_wave_promotes(self) -> None:
        """Every lab device ran the candidate healthy for longer than the soak: met."""
        v = verdict([Evidence("l1", status("l1")), Evidence("l2", status("l2"))])
        assert v.met and [r.state for r in v.devices] == ["proved", "proved"]

    def test_soak_is_measured_to_the_device_report_not_to_now(self) -> None:
        """An old report proves only the time it covers: 50 min then, even if read an hour later."""
        v = gate(
            wave="production",
            previous="lab",
            candidate=CAND,
            soak=3600.0,
            max_failed=0,
            evidence=[Evidence("l1", status("l1", good_for=3000.0, said_ago=3600.0))],
            now=NOW,
        )
        assert not v.met
        assert (
            "device l1 has not soaked 1h: ran cccccccccccc for 50m, 10m of soak left" in v.reasons
        )

    def test_rolled_back_device_is_named_with_its_outcome(self) -> None:
        """A lab device that rolled back the candidate refuses the promotion, naming it."""
        bad = status("l1", applied=OLD, outcome="rolled-back", reason="health gate failed")
        v = verdict([Evidence("l1", bad), Evidence("l2", status("l2"))])
        assert not v.met
        assert "l1 (rolled back: health gate failed)" in v.reasons[0]

    def test_older_agent_without_last_good_at_proves_no_soak(self) -> None:
        """A report without last_good_at cannot prove a soak, so the gate holds."""
        old = status("l1")
        del old["last_good_at"]
        v = verdict([Evidence("l1", old)])
        assert not v.met and v.devices[0].state == "soaking"

    def test_previous_wave_not_started(self) -> None:
        """Promoting past a wave without a pin is refused with what to do."""
        v = gate(
            wave="production",
            previous="pilot",
            candidate=None,
            soak=0,
            max_failed=0,
            evidence=[],
            now=NOW,
        )
        assert v.reasons == ("wave pilot has not started (no waves/pilot.yaml); promote it first",)

    def test_empty_previous_wave_proves_nothing(self) -> None:
        """A previous wave without devices never lets a candidate through."""
        assert not verdict([]).met


KINDS = ("proved", "young", "behind", "failed", "rolled-back", "offline", "stale", "silent")


def evidence_of(kind: str, device: str) -> Evidence:
    if kind == "proved":
        return Evidence(device, status(device), True)
    if kind == "young":
        return Evidence(device, status(device, good_for=60.0), True)
    if kind == "behind":
        return Evidence(device, status(device, applied=OLD), True)
    if kind in ("failed", "rolled-back"):
        return Evidence(device, status(device, applied=OLD, outcome=kind), True)
    if kind == "offline":
        return Evidence(device, status(device), False)
    if kind == "stale":
        return Evidence(device, status(device, said_ago=3600.0), None)
    return Evidence(device, None, None)


class TestGateProperties:
    """Safety of the gate over generated waves (Hypothesis)."""

    @settings(max_examples=300, deadline=None)
    @given(
        kinds=st.lists(st.sampled_from(KINDS), min_size=0, max_size=12),
        max_failed=st.integers(min_value=0, max_value=4),
    )
    def test_never_promotes_with_too_many_bad_or_before_soak(
        self, kinds: list[str], max_failed: int
    ) -> None:
        """Met implies: at most maxFailed bad devices and every other device soaked."""
        evidence = [evidence_of(k, f"d{i}") for i, k in enumerate(kinds)]
        v = verdict(evidence, max_failed=max_failed)
        bad = sum(k in ("failed", "rolled-back", "offline", "stale", "silent") for k in kinds)
        others_proved = all(
            k == "proved"
            for k in kinds
            if k not in ("failed", "rolled-back", "offline", "stale", "silent")
        )
        assert v.met == (bool(kinds) and bad <= max_failed and others_proved)
        if v.met:
            assert all(r.soaked >= 3600.0 for r in v.devices if not r.bad)

    @settings(max_examples=200, deadline=None)
    @given(
        good_for=st.floats(min_value=0, max_value=10_000),
        soak=st.floats(min_value=0, max_value=10_000),
    )
    def test_never_before_soak(self, good_for: float, soak: float) -> None:
        """A single device promotes exactly when it ran the candidate at least the soak."""
        v = verdict([Evidence("l1", status("l1", good_for=good_for))], soak=soak)
        proved = v.devices[0].soaked
        assert v.met == (proved >= soak)

    @given(kind=st.sampled_from(("offline", "stale", "silent")))
    def test_offline_and_silent_count_as_bad(self, kind: str) -> None:
        """An unreachable or silent device uses up maxFailed like a failed one."""
        evidence = [evidence_of(kind, "d0"), evidence_of("proved", "d1")]
        assert not verdict(evidence, max_failed=0).met
        assert verdict(evidence, max_failed=1).met
