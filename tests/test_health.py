"""The health gate: pure verdicts on snapshots, and polling with an injected clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from fakes import FakeContainer, FakeRuntime, container_of, desired, service, stack

from reconciler.engine.health import assess, baseline_restarts, gate_timeout, verify
from reconciler.model import ObservedState


@dataclass
class FakeClock:
    """Monotonic time that only moves when the code under test sleeps."""

    now: float = 0.0
    on_sleep: list[Callable[[float], None]] = field(default_factory=list)
    sleeps: int = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        for hook in self.on_sleep:
            hook(self.now)


BROKER = service("mqtt", "broker")
NODE_RED = service("node-red", "node-red", healthcheck=True)


def seeded(*containers: FakeContainer, **health: str) -> FakeRuntime:
    """A fake engine holding ``containers``; ``health`` sets a container id's health."""
    rt = FakeRuntime()
    for c in containers:
        rt.add_container(c)
        c.health = health.get(c.id, c.health)
    return rt


def snapshot(runtime: FakeRuntime) -> ObservedState:
    return runtime.observe("dev1")


class TestAssess:
    """One snapshot in, one verdict per service out."""

    def test_exited_container_fails_with_its_exit_code(self) -> None:
        """A container that exited fails the gate, naming stack/service and the code."""
        rt = FakeRuntime()
        rt.add_container(container_of(BROKER, "c1", state="exited", exit_code=1))
        result = assess(desired(stack("mqtt", BROKER)), snapshot(rt), {})
        assert result.verdict == "failed"
        assert result.reason("failed") == "mqtt/broker: exited with code 1"

    def test_unhealthy_container_fails(self) -> None:
        """A container whose healthcheck says unhealthy fails the gate."""
        rt = seeded(container_of(NODE_RED, "c1"), c1="unhealthy")
        result = assess(desired(stack("node-red", NODE_RED)), snapshot(rt), {})
        assert result.reason("failed") == "node-red/node-red: unhealthy"

    def test_starting_health_waits(self) -> None:
        """A healthcheck still starting means wait, not fail."""
        rt = seeded(container_of(NODE_RED, "c1"), c1="starting")
        assert assess(desired(stack("node-red", NODE_RED)), snapshot(rt), {}).verdict == "waiting"

    def test_new_restart_fails_even_while_running(self) -> None:
        """A running container that restarted since the baseline fails the gate."""
        rt = FakeRuntime()
        rt.add_container(container_of(BROKER, "c1", restart_count=3))
        state = desired(stack("mqtt", BROKER))
        assert assess(state, snapshot(rt), {"c1": 3}).verdict == "healthy"
        failed = assess(state, snapshot(rt), {"c1": 2})
        assert failed.reason("failed") == "mqtt/broker: restarted 1 time(s)"

    def test_restarting_container_fails(self) -> None:
        """A container in a restart loop fails the gate."""
        rt = FakeRuntime()
        rt.add_container(container_of(BROKER, "c1", state="restarting", exit_code=2))
        result = assess(desired(stack("mqtt", BROKER)), snapshot(rt), {})
        assert result.reason("failed") == "mqtt/broker: restarting after exit code 2"

    def test_missing_or_outdated_container_fails(self) -> None:
        """No container, or one with another config hash, fails the gate."""
        rt = FakeRuntime()
        other = replace(BROKER, config_hash="other")
        rt.add_container(container_of(other, "c1"))
        state = desired(stack("mqtt", BROKER, service("mqtt", "node-red")))
        result = assess(state, snapshot(rt), {})
        assert [(v.name, v.verdict) for v in result.services] == [
            ("mqtt/broker", "failed"),
            ("mqtt/node-red", "failed"),
        ]
        assert "does not run the desired configuration" in result.reason("failed")
        assert "container is missing" in result.reason("failed")

    def test_running_services_are_healthy(self) -> None:
        """Running containers, healthy where checked, pass."""
        rt = FakeRuntime()
        rt.add_container(container_of(BROKER, "c1"))
        rt.add_container(container_of(NODE_RED, "c2"))
        state = desired(stack("mqtt", BROKER), stack("node-red", NODE_RED))
        assert assess(state, snapshot(rt), baseline_restarts(snapshot(rt))).verdict == "healthy"


class TestVerify:
    """Polling until healthy, failed, or timed out, with time injected."""

    def test_healthchecked_services_pass_without_settling(self) -> None:
        """When every service has a healthcheck, healthy is final at once."""
        rt = FakeRuntime()
        rt.add_container(container_of(NODE_RED, "c1"))
        clock = FakeClock()
        state = desired(stack("node-red", NODE_RED, health_timeout=10.0))
        report = verify(rt, state, {}, clock=clock.monotonic, sleep=clock.sleep)
        assert report.healthy and report.reason == ""
        assert clock.sleeps == 0

    def test_unchecked_services_must_stay_up_for_the_settle_period(self) -> None:
        """A service without healthcheck counts only after running for the settle time."""
        rt = FakeRuntime()
        rt.add_container(container_of(BROKER, "c1"))
        clock = FakeClock()
        state = desired(stack("mqtt", BROKER, health_timeout=10.0))
        report = verify(rt, state, {}, clock=clock.monotonic, sleep=clock.sleep, settle=3.0)
        assert report.healthy
        assert clock.now >= 3.0

    def test_crash_during_settle_fails_fast(self) -> None:
        """A process that dies a moment after start fails the gate before the timeout."""
        rt = FakeRuntime()
        c = rt.add_container(container_of(BROKER, "c1"))
        clock = FakeClock()

        def crash(now: float) -> None:
            if now >= 1.0:
                c.state, c.exit_code = "exited", 1

        clock.on_sleep.append(crash)
        state = desired(stack("mqtt", BROKER, health_timeout=60.0))
        report = verify(rt, state, {}, clock=clock.monotonic, sleep=clock.sleep, settle=5.0)
        assert not report.healthy
        assert report.reason == "mqtt/broker: exited with code 1"
        assert clock.now < 2.0

    def test_starting_then_healthy_passes(self) -> None:
        """A healthcheck that takes a few polls to pass is waited for."""
        rt = seeded(container_of(NODE_RED, "c1"), c1="starting")
        c = rt.containers["c1"]
        clock = FakeClock()
        clock.on_sleep.append(lambda now: setattr(c, "health", "healthy") if now >= 2 else None)
        state = desired(stack("node-red", NODE_RED, health_timeout=10.0))
        report = verify(rt, state, {}, clock=clock.monotonic, sleep=clock.sleep)
        assert report.healthy
        assert 2.0 <= clock.now < 3.0

    def test_never_healthy_times_out_with_reason(self) -> None:
        """A service stuck starting fails when the stack's timeout passes."""
        rt = seeded(container_of(NODE_RED, "c1"), c1="starting")
        clock = FakeClock()
        state = desired(stack("node-red", NODE_RED, health_timeout=4.0))
        report = verify(rt, state, {}, clock=clock.monotonic, sleep=clock.sleep)
        assert not report.healthy
        assert report.reason == "not healthy within 4s: node-red/node-red: health check starting"
        assert 4.0 <= clock.now < 4.6

    def test_timeout_is_the_longest_stack_timeout(self) -> None:
        """The gate waits as long as the slowest stack allows."""
        state = desired(
            stack("a", service("a", "x"), health_timeout=5.0),
            stack("b", service("b", "y"), health_timeout=30.0),
        )
        assert gate_timeout(state) == 30.0
        assert gate_timeout(desired()) == 0.0

    def test_no_services_is_healthy_at_once(self) -> None:
        """A device that runs nothing is trivially healthy."""
        clock = FakeClock()
        report = verify(FakeRuntime(), desired(), {}, clock=clock.monotonic, sleep=clock.sleep)
        assert report.healthy and clock.sleeps == 0
