"""The device state store: durable, round-tripping, never crashing a pass."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from reconciler.errors import FleetgateError
from reconciler.model import (
    Dependency,
    DesiredState,
    Healthcheck,
    Location,
    Mount,
    NetworkAttachment,
    NetworkSpec,
    PortBinding,
    ServiceSpec,
    StackSpec,
    UpdateWindow,
    VolumeSpec,
    rfc3339,
)
from reconciler.record import MAX_FAILED, DeviceRecord, structure_state, unstructure_state
from reconciler.store import StateStore, dump_record, load_record

NOW = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
SHA_A = "a" * 40
SHA_B = "b" * 40


def rich_state(revision: str | None = SHA_A) -> DesiredState:
    svc = ServiceSpec(
        device="dev1",
        stack="mqtt",
        service="broker",
        container_name="dev1_mqtt_broker",
        image="registry.plant.example/eclipse-mosquitto:2",
        command=("mosquitto", "-c", "/mosquitto/config/mosquitto.conf"),
        entrypoint=None,
        environment=(("TZ", "Europe/Berlin"),),
        ports=(PortBinding(1883, "tcp", 1883, "127.0.0.1"), PortBinding(5683, "udp")),
        mounts=(Mount("volume", "dev1_mqtt_data", "/mosquitto/data"),),
        networks=(NetworkAttachment("dev1_mqtt_default", ("broker",)),),
        healthcheck=Healthcheck(("CMD-SHELL", "true"), interval=1.0, retries=3),
        depends_on=(Dependency("db", "service_healthy"),),
        restart="unless-stopped",
        init=True,
        stop_grace_period=1.0,
        config_hash="abc",
        field_hashes=(("image", "1234"),),
    )
    stack = StackSpec(
        name="mqtt",
        services=(svc,),
        networks=(NetworkSpec("dev1_mqtt_default"),),
        volumes=(VolumeSpec("dev1_mqtt_data"),),
        data_dirs=("/var/lib/fleetgate/data/dev1/mqtt/logs",),
        health_timeout=5.0,
    )
    window = UpdateWindow(("mon", "fri"), "22:00", "04:00", "Europe/Berlin", Location("f", 3))
    return DesiredState("dev1", revision, "arm64", (stack,), (window,))


class TestDesiredStateSerialization:
    """The last-good desired state survives a JSON round trip exactly."""

    def test_round_trip_keeps_tuples_literals_and_none(self) -> None:
        """Tuples, Literal values, nested dataclasses and None fields come back equal."""
        state = rich_state()
        data = json.loads(json.dumps(unstructure_state(state)))
        back = structure_state(data)
        assert back == state
        assert isinstance(back.stacks[0].services[0].command, tuple)
        assert back.stacks[0].services[0].entrypoint is None

    def test_revision_none_round_trips(self) -> None:
        """A state rendered outside Git (revision None) round-trips too."""
        assert structure_state(unstructure_state(rich_state(None))) == rich_state(None)

    @settings(max_examples=30)
    @given(
        env=st.lists(st.tuples(st.text(min_size=1), st.text()), max_size=4),
        timeout=st.floats(0, 1e6, allow_nan=False),
        arch=st.sampled_from(["amd64", "arm64", "armv7", None]),
    )
    def test_round_trip_property(
        self, env: list[tuple[str, str]], timeout: float, arch: str | None
    ) -> None:
        """Any environment, timeout and arch round-trip unchanged."""
        base = rich_state()
        svc = base.stacks[0].services[0]
        stack = replace(
            base.stacks[0],
            services=(replace(svc, environment=tuple(env)),),
            health_timeout=timeout,
        )
        state = replace(base, stacks=(stack,), arch=arch)  # type: ignore[arg-type]
        assert structure_state(json.loads(json.dumps(unstructure_state(state)))) == state


class TestDeviceRecord:
    """Record transitions are pure and keep what a rollback needs."""

    def test_good_sets_applied_and_target_and_forgets_failure(self) -> None:
        """Marking a revision good makes it the rollback target and clears its failure."""
        rec = DeviceRecord("dev1").failed_with(SHA_A, "fp", "broken", NOW)
        rec = rec.good(SHA_A, rich_state(), NOW)
        assert rec.last_good is not None and rec.last_good.revision == SHA_A
        assert rec.last_applied is not None and rec.last_applied.revision == SHA_A
        assert rec.last_good_state == rich_state()
        assert rec.failure_of(SHA_A) is None

    def test_failure_lookup_by_revision_or_fingerprint(self) -> None:
        """A failure is found by its revision, or by an identical desired state."""
        rec = DeviceRecord("dev1").failed_with(SHA_A, "fp1", "mqtt/broker: exited", NOW)
        assert rec.failure_of(SHA_A) is not None
        assert rec.failure_of(SHA_B, "fp1") is not None
        assert rec.failure_of(SHA_B, "fp2") is None

    def test_failed_revisions_are_bounded_and_deduplicated(self) -> None:
        """Failing again replaces the entry; only the newest MAX_FAILED are kept."""
        rec = DeviceRecord("dev1")
        for i in range(MAX_FAILED + 5):
            rec = rec.failed_with(f"{i:040x}", "", "bad", NOW + timedelta(seconds=i))
        rec = rec.failed_with(f"{MAX_FAILED + 4:040x}", "", "again", NOW)
        assert len(rec.failed) == MAX_FAILED
        assert rec.failed[-1].reason == "again"
        assert len({f.revision for f in rec.failed}) == MAX_FAILED


class TestStateStore:
    """The store writes atomically and never crashes on what it reads."""

    def test_save_then_load_round_trips(self, tmp_path: Path) -> None:
        """Everything saved is loaded back equal, times in RFC 3339 UTC."""
        store = StateStore(tmp_path, "dev1")
        rec = (
            DeviceRecord("dev1")
            .attempted(SHA_B, NOW)
            .good(SHA_A, rich_state(), NOW)
            .failed_with(SHA_B, "fp", "node-red/node-red: unhealthy", NOW)
            .finished("rolled-back", "because", NOW)
        )
        store.save(rec)
        assert store.load() == rec
        raw = json.loads(store.path.read_text())
        assert raw["last_good"]["at"] == "2026-03-29T01:30:00Z"
        assert store.path == tmp_path / "devices" / "dev1" / "state.json"

    def test_file_is_private(self, tmp_path: Path) -> None:
        """The state file holds rendered environment values, so only its owner may read it."""
        store = StateStore(tmp_path, "dev1")
        store.save(DeviceRecord("dev1"))
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600

    def test_missing_file_is_an_empty_record(self, tmp_path: Path) -> None:
        """A device seen for the first time has an empty record."""
        assert StateStore(tmp_path, "dev1").load() == DeviceRecord("dev1")

    @pytest.mark.parametrize(
        "content",
        [b"", b"{not json", b"[]", b'{"version": 99}', b'{"version": 1, "device": 5}',
         b'{"version": 1, "device": "dev1", "last_good": {"revision": "x", "at": "never"}}'],
    )  # fmt: skip
    def test_corrupt_file_is_an_empty_record_and_logged(
        self, tmp_path: Path, content: bytes
    ) -> None:
        """A torn or foreign file is logged and set aside, and the pass starts empty."""
        store = StateStore(tmp_path, "dev1")
        store.path.parent.mkdir(parents=True)
        store.path.write_bytes(content)
        with capture_logs() as logs:
            assert store.load() == DeviceRecord("dev1")
        assert [e["event"] for e in logs] in (["state.corrupt"], ["state.foreign"])

    def test_record_of_another_device_is_ignored(self, tmp_path: Path) -> None:
        """A state file copied from another device is not trusted."""
        store = StateStore(tmp_path, "dev1")
        store.path.parent.mkdir(parents=True)
        store.path.write_bytes(dump_record(DeviceRecord("dev2").attempted(SHA_A, NOW)))
        assert store.load() == DeviceRecord("dev1")

    def test_exclusive_refuses_a_second_pass(self, tmp_path: Path) -> None:
        """Two passes for one device never run at once."""
        store = StateStore(tmp_path, "dev1")
        other = StateStore(tmp_path, "dev1")
        with (
            store.exclusive(),
            pytest.raises(FleetgateError, match="another fleetgate pass"),
            other.exclusive(),
        ):
            pass
        with store.exclusive():  # released afterwards
            pass


class TestTimes:
    """Times are RFC 3339 UTC."""

    def test_rfc3339_converts_to_utc(self) -> None:
        """An aware time in another zone is written in UTC with a Z."""
        t = datetime(2026, 7, 1, 12, 0, 5, 999, tzinfo=ZoneInfo("Europe/Berlin"))
        assert rfc3339(t) == "2026-07-01T10:00:05Z"

    def test_load_record_rejects_unknown_version(self) -> None:
        """A file from a future version is not guessed at."""
        with pytest.raises(ValueError, match="version"):
            load_record(b'{"version": 2, "device": "dev1"}')
