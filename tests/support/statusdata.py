"""Example records and statuses (with a secret to hide) for the status tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler.model import (
    DesiredState,
    ObservedContainer,
    ObservedImage,
    ObservedState,
    ServiceSpec,
    StackSpec,
)
from reconciler.reconcile.run import PassResult
from reconciler.record import DeviceRecord
from reconciler.report.status import (
    FetchState,
    PendingUpdate,
    Status,
    Tally,
    build_status,
)
from reconciler.stages import Stage

NOW = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


GOOD = "a" * 40


BAD = "b" * 40


SECRET = "hunter2-s3cr3t-Pa55"


def desired(revision: str = GOOD) -> DesiredState:
    spec = ServiceSpec(
        device="press-01",
        stack="mqtt",
        service="broker",
        container_name="press-01_mqtt_broker",
        image="registry.plant.example/mosquitto:2",
        environment=(("MQTT_PASSWORD", SECRET), ("TZ", "Europe/Berlin")),
        config_hash="c0ffee",
    )
    return DesiredState("press-01", revision, "amd64", (StackSpec("mqtt", (spec,)),))


def record() -> DeviceRecord:
    """Good at GOOD; BAD failed its gate (its reason leaks the secret, as a bad message might)."""
    rec = DeviceRecord("press-01").good(GOOD, desired(), NOW - timedelta(hours=2))
    rec = rec.attempted(BAD, NOW - timedelta(minutes=10))
    rec = rec.failed_with(BAD, "f", f"broker exited: auth {SECRET} rejected", NOW)
    return rec.applied(GOOD, NOW).finished("rolled-back", "rolled back", NOW)


def observed() -> ObservedState:
    broker = ObservedContainer(
        id="c1",
        name="press-01_mqtt_broker",
        stack="mqtt",
        service="broker",
        state="running",
        config_hash="c0ffee",
        revision=GOOD,
        image="registry.plant.example/mosquitto:2",
        image_id="sha256:img1",
        health="healthy",
        restart_count=1,
    )
    image = ObservedImage(
        "sha256:img1",
        ("registry.plant.example/mosquitto:2",),
        ("mirror.example/mosquitto@sha256:" + "1" * 64,
         "registry.plant.example/mosquitto@sha256:" + "2" * 64),
    )  # fmt: skip
    return ObservedState("press-01", containers=(broker,), images=(image,))


def last_pass() -> PassResult:
    return PassResult(
        device="press-01",
        outcome="rolled-back",
        reason=f"revision {BAD} failed: password {SECRET} refused; rolled back to {GOOD}",
        stage=Stage.ROLLBACK,
        revision=BAD,
        applied_revision=GOOD,
        last_good_revision=GOOD,
        started_at=NOW - timedelta(seconds=40),
        finished_at=NOW - timedelta(seconds=1),
    )


def example_status(**overrides: object) -> Status:
    """A status as the agent would build it after a rollback, with a pending update."""
    fetch = FetchState().fetched(NOW - timedelta(seconds=30))
    kwargs: dict[str, object] = {
        "now": NOW,
        "last_pass": last_pass(),
        "observed": observed(),
        "pending": PendingUpdate(BAD, "outside the update windows", NOW + timedelta(hours=20)),
        "fetch": fetch,
        "poll_interval": 60.0,
        "heartbeat_at": NOW,
        "counters": Tally().counted("succeeded", 2.0).counted("rolled-back", 40.0),
    }
    kwargs.update(overrides)
    return build_status(record(), **kwargs)  # type: ignore[arg-type]
