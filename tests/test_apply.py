"""The executor against the fake engine: order, download-then-kill, configs, waits, logs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import structlog
from fakes import DEVICE, FakeContainer, FakeRuntime, container_of, desired, service, stack
from structlog.testing import capture_logs

from reconciler.engine.apply import ApplyResult, ConfigReader, apply
from reconciler.errors import EngineError, HealthError, ImageUnavailable, SourceError
from reconciler.manifests.tree import RepoTree
from reconciler.model import ConfigFile, Dependency, DesiredState
from reconciler.plan.planner import (
    MaterializeConfig,
    Plan,
    PullImage,
    StopContainer,
    WaitHealthy,
    plan,
)

Condition = Literal["service_started", "service_healthy", "service_completed_successfully"]


@dataclass(frozen=True, slots=True)
class DictReader:
    files: dict[str, bytes]

    def read_bytes(self, relpath: str) -> bytes:
        return self.files[relpath]


class FakeClock:
    """Monotonic time that only moves when the executor sleeps."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def run(
    p: Plan, rt: FakeRuntime, reader: ConfigReader | None = None, clock: FakeClock | None = None
) -> ApplyResult:
    clock = clock or FakeClock()
    return apply(
        p,
        rt,
        reader or DictReader({}),
        structlog.get_logger(),
        clock=clock.now,
        sleep=clock.sleep,
        poll_interval=2.0,
    )


def container(rt: FakeRuntime, name: str) -> FakeContainer:
    found = rt.by_name(name)
    assert found is not None, name
    return found


def _bumped() -> tuple[DesiredState, FakeRuntime]:
    """A device running busybox:1 whose desired state moves to busybox:2."""
    old = service("line", "collector", "fleetgate-test/busybox:1")
    rt = FakeRuntime()
    rt.add_image("fleetgate-test/busybox:1")
    rt.add_container(container_of(old, "c1"))
    return desired(stack("line", service("line", "collector", "fleetgate-test/busybox:2"))), rt


class TestOrder:
    def test_steps_run_in_plan_order(self) -> None:
        """A recreate pulls, creates beside the old one, stops and removes it, renames, starts."""
        state, rt = _bumped()
        with capture_logs():
            result = run(plan(state, rt.observe(DEVICE)), rt)
        assert [name for name, _ in rt.calls] == [
            "pull",
            "create_container",
            "stop_container",
            "remove_container",
            "rename_container",
            "start_container",
        ]
        kinds = [s.kind for s in result.steps_done]
        assert kinds == ["pull", "create", "stop", "remove", "rename", "start"]
        assert result.removed == ("c1",)
        assert result.created == (container(rt, "line-collector").id,)

    def test_a_plan_that_pulls_after_stopping_is_refused(self) -> None:
        """Apply refuses to run a plan whose pulls do not all come first, before doing anything."""
        state, rt = _bumped()
        p = plan(state, rt.observe(DEVICE))
        swapped = Plan(steps=(p.steps[2], p.steps[0], p.steps[1], *p.steps[3:]), device=DEVICE)
        assert isinstance(swapped.steps[0], StopContainer)
        with pytest.raises(ValueError, match="pulls an image after"):
            run(swapped, rt)
        assert rt.calls == []


class TestDownloadThenKill:
    def test_failed_pull_stops_nothing(self) -> None:
        """When a pull fails, apply raises ImageUnavailable and the old container still runs."""
        state, rt = _bumped()
        rt.failing_pulls.add("fleetgate-test/busybox:2")
        with capture_logs() as logs, pytest.raises(ImageUnavailable):
            run(plan(state, rt.observe(DEVICE)), rt)
        assert [name for name, _ in rt.calls] == ["pull"]
        assert rt.containers["c1"].state == "running"
        assert [e["event"] for e in logs] == ["step.failed"]

    def test_a_later_pull_failure_also_stops_nothing(self) -> None:
        """With several images to pull, a failure of the last one still precedes every stop."""
        a_old, b_old = service("a", "app", "img/a:1"), service("b", "app", "img/b:1")
        rt = FakeRuntime()
        for ref in ("img/a:1", "img/b:1"):
            rt.add_image(ref)
        rt.add_container(container_of(a_old, "ca"))
        rt.add_container(container_of(b_old, "cb"))
        rt.failing_pulls.add("img/b:2")
        state = desired(
            stack("a", service("a", "app", "img/a:2")), stack("b", service("b", "app", "img/b:2"))
        )
        with capture_logs(), pytest.raises(ImageUnavailable):
            run(plan(state, rt.observe(DEVICE)), rt)
        assert [name for name, _ in rt.calls] == ["pull", "pull"]
        assert {c.state for c in rt.containers.values()} == {"running"}


class TestConfigs:
    def _config(self, root: Path, data: bytes, mode: int = 0o440) -> ConfigFile:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return ConfigFile(
            "stacks/line/app.conf", str(root / digest[7:19] / "app.conf"), digest, mode
        )

    def test_config_is_written_with_its_content_and_mode(self, tmp_path: Path) -> None:
        """A config lands at its host path with the repository content and the requested mode."""
        (tmp_path / "repo/stacks/line").mkdir(parents=True)
        (tmp_path / "repo/stacks/line/app.conf").write_bytes(b"speed=3\n")
        cfg = self._config(tmp_path / "configs", b"speed=3\n")
        with capture_logs() as logs:
            run(
                Plan((MaterializeConfig(cfg, "stack line"),)),
                FakeRuntime(),
                RepoTree(tmp_path / "repo"),
            )
        dest = Path(cfg.host_path)
        assert dest.read_bytes() == b"speed=3\n"
        assert dest.stat().st_mode & 0o777 == 0o440
        assert [p.name for p in dest.parent.iterdir()] == ["app.conf"]  # no temp file left
        assert logs[0]["written"] is True

    def test_an_identical_config_is_not_rewritten(self, tmp_path: Path) -> None:
        """A config already present with the same digest is left alone (not even re-read)."""
        cfg = self._config(tmp_path, b"speed=3\n")
        step = MaterializeConfig(cfg, "stack line")
        with capture_logs():
            run(Plan((step,)), FakeRuntime(), DictReader({cfg.repo_path: b"speed=3\n"}))
        before = Path(cfg.host_path).stat().st_mtime_ns
        with capture_logs() as logs:
            run(Plan((step,)), FakeRuntime(), DictReader({}))
        assert Path(cfg.host_path).stat().st_mtime_ns == before
        assert logs[0]["written"] is False

    def test_content_that_does_not_match_the_digest_is_refused(self, tmp_path: Path) -> None:
        """Content that changed since render is never written under the old digest's path."""
        cfg = self._config(tmp_path, b"speed=3\n")
        with capture_logs(), pytest.raises(SourceError, match="content changed"):
            run(
                Plan((MaterializeConfig(cfg, "x"),)),
                FakeRuntime(),
                DictReader({cfg.repo_path: b"speed=9\n"}),
            )
        assert not Path(cfg.host_path).exists()

    def test_directories_are_created_before_containers(self, tmp_path: Path) -> None:
        """A fresh stack gets its data and lock directories created by the plan."""
        data, lock = tmp_path / "data/dev1/line/db", tmp_path / "locks/line"
        state = desired(
            stack("line", service("line", "db"), data_dirs=(str(data),), lock_dir=str(lock))
        )
        rt = FakeRuntime()
        rt.add_image("fleetgate-test/busybox:1")
        with capture_logs():
            run(plan(state, rt.observe(DEVICE)), rt)
        assert data.is_dir() and lock.is_dir()


def _with_dependency(condition: Condition = "service_healthy") -> tuple[DesiredState, FakeRuntime]:
    db = service("line", "db", healthcheck=True)
    web = service("line", "web", depends_on=(Dependency("db", condition),))
    rt = FakeRuntime()
    rt.add_image("fleetgate-test/busybox:1")
    return desired(stack("line", db, web, health_timeout=30.0)), rt


class TestWaitHealthy:
    def test_dependent_starts_after_its_dependency_is_healthy(self) -> None:
        """A dependent is started only once its service_healthy dependency reports healthy."""
        state, rt = _with_dependency()
        rt.starting_polls["line-db"] = 3
        clock = FakeClock()
        with capture_logs() as logs:
            run(plan(state, rt.observe(DEVICE)), rt, clock=clock)
        names = [c for c in rt.calls if c[0] in ("inspect_container", "start_container")]
        assert names == [
            ("start_container", "line-db"),
            *[("inspect_container", "line-db")] * 4,
            ("start_container", "line-web"),
        ]
        assert clock.sleeps == [2.0, 2.0, 2.0]
        assert [e["waited"] for e in logs if e["step"] == "wait-healthy"] == [6.0]

    def test_a_dependency_that_never_gets_healthy_times_out(self) -> None:
        """WaitHealthy raises HealthError at its timeout and the dependent is never started."""
        state, rt = _with_dependency()
        rt.starting_polls["line-db"] = 1000
        clock = FakeClock()
        with capture_logs(), pytest.raises(HealthError, match="within 30s"):
            run(plan(state, rt.observe(DEVICE)), rt, clock=clock)
        assert clock.t == 30.0
        assert container(rt, "line-web").state == "created"

    def test_an_unhealthy_dependency_fails_at_once(self) -> None:
        """A dependency reporting unhealthy fails the wait without sleeping to the timeout."""
        state, rt = _with_dependency()
        rt.unhealthy.add("line-db")
        clock = FakeClock()
        with capture_logs(), pytest.raises(HealthError, match="unhealthy"):
            run(plan(state, rt.observe(DEVICE)), rt, clock=clock)
        assert clock.t == 0.0

    def test_a_crashing_dependency_fails_the_wait(self) -> None:
        """A dependency that exits right after start fails the wait with its exit code."""
        state, rt = _with_dependency()
        rt.crash_on_start["line-db"] = 3
        with capture_logs(), pytest.raises(HealthError, match="code 3"):
            run(plan(state, rt.observe(DEVICE)), rt)

    def test_a_completed_one_shot_dependency_lets_the_dependent_start(self) -> None:
        """service_completed_successfully waits for the dependency to exit 0, then starts."""
        state, rt = _with_dependency("service_completed_successfully")
        rt.crash_on_start["line-db"] = 0
        p = plan(state, rt.observe(DEVICE))
        assert any(isinstance(s, WaitHealthy) and s.condition == "completed" for s in p.steps)
        with capture_logs():
            run(p, rt)
        assert container(rt, "line-web").state == "running"

    def test_a_vanished_dependency_fails_the_wait(self) -> None:
        """A dependency removed behind fleetgate's back fails the wait instead of hanging."""
        rt = FakeRuntime()
        step = WaitHealthy("line", "db", "line-db", 30.0, "x")
        with capture_logs(), pytest.raises(HealthError, match="vanished"):
            run(Plan((step,)), rt)


class TestVanished:
    def test_a_container_gone_between_observe_and_stop_is_an_engine_error(self) -> None:
        """Stopping a container that vanished raises EngineError; the next pass converges."""
        state, rt = _bumped()
        p = plan(state, rt.observe(DEVICE))
        rt.vanish("c1")
        with capture_logs(), pytest.raises(EngineError, match="no such container"):
            run(p, rt)
        with capture_logs():
            run(plan(state, rt.observe(DEVICE)), rt)
        assert plan(state, rt.observe(DEVICE)).is_empty


class TestLogs:
    def test_one_event_per_step_with_its_reason(self) -> None:
        """Every executed step logs one step.applied event with kind, reason, device, revision."""
        state, rt = _bumped()
        p = plan(state, rt.observe(DEVICE))
        with capture_logs() as logs:
            run(p, rt)
        applied = [e for e in logs if e["event"] == "step.applied"]
        assert [(e["step"], e["reason"]) for e in applied] == [(s.kind, s.reason) for s in p.steps]
        assert {(e["device"], e["revision"]) for e in applied} == {(DEVICE, state.revision)}
        assert applied[1]["service"] == "line/collector"
        assert applied[1]["reason"] == "config-hash changed: image"

    def test_environment_values_are_never_logged(self) -> None:
        """A secret in a service's environment appears in no log event of its creation."""
        rt = FakeRuntime()
        rt.add_image("fleetgate-test/busybox:1")
        state = desired(stack("s", service("s", "x", environment={"TOKEN": "hunter2-secret"})))
        with capture_logs() as logs:
            run(plan(state, rt.observe(DEVICE)), rt)
        assert logs and "hunter2-secret" not in repr(logs)

    def test_pull_progress_is_logged_at_debug(self) -> None:
        """Pull progress events are forwarded to the log at debug level."""
        state, rt = _bumped()
        with capture_logs() as logs:
            run(plan(state, rt.observe(DEVICE)), rt)
        assert logs[0] == {
            "event": "pull.progress",
            "log_level": "debug",
            "image": "fleetgate-test/busybox:2",
            "status": "Downloaded",
            "device": DEVICE,
            "revision": state.revision,
        }
        assert isinstance(plan(state, FakeRuntime().observe(DEVICE)).steps[0], PullImage)
