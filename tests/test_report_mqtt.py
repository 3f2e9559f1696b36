"""The agent's MQTT reporter and the fleet reader against a real Mosquitto on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry, generate_latest
from structlog.testing import capture_logs
from support.mqtt import VIEWER, Mosquitto, running_broker
from support.wait import wait_for

from reconciler.report.broker import Broker, ReportStats, parse_broker
from reconciler.report.http import StatusServer
from reconciler.report.metrics import ReportCollector
from reconciler.report.mqtt import FleetSubscription, MqttReporter, read_retained
from reconciler.report.status import Status

SHA = "a" * 40
USERS = {"d1": "pw-d1-secret", "d2": "pw-d2-secret", VIEWER: "pw-viewer"}


def _status(device: str, reason: str = "converged") -> Status:
    return Status(
        device=device,
        applied_revision=SHA,
        outcome="succeeded",
        reason=reason,
        heartbeat_at=datetime.now(UTC),
    )


def _broker(url: str, user: str | None = None) -> Broker:
    b = parse_broker(url, "test")
    if user is None:
        return b
    return Broker(b.host, b.port, b.tls, None, user, USERS[user])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with running_broker(tmp_path / "anon") as b:
        yield b


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Mosquitto]:
    with running_broker(tmp_path / "acl", USERS) as b:
        yield b


def _retained(url: str, user: str | None = None) -> dict[str, bytes]:
    return dict(read_retained(_broker(url, user), quiet=0.3, timeout=5))


class TestReporter:
    def test_publishes_retained_status_and_presence(self, broker: Mosquitto) -> None:
        """A reporter leaves its status (exactly Status.to_json) and online true retained."""
        reporter = MqttReporter(_broker(broker.url), "d1")
        reporter.start()
        try:
            reporter.publish(_status("d1"))
            wait_for(lambda: reporter.stats().last_publish_at, timeout=10, what="a publish")
            seen = _retained(broker.url)
            assert json.loads(seen["fleetgate/d1/status"]) == _status("d1").to_json() | {
                "heartbeat_at": json.loads(seen["fleetgate/d1/status"])["heartbeat_at"]
            }
            assert seen["fleetgate/d1/online"] == b"true"
            assert reporter.stats().connected
        finally:
            reporter.stop()

    def test_clean_stop_says_offline(self, broker: Mosquitto) -> None:
        """After a clean stop the retained presence is false."""
        reporter = MqttReporter(_broker(broker.url), "d1", topic="plant/a")
        reporter.start()
        reporter.publish(_status("d1"))
        wait_for(lambda: reporter.stats().last_publish_at, timeout=10, what="a publish")
        reporter.stop()
        seen = dict(read_retained(_broker(broker.url), "plant/a", quiet=0.3, timeout=5))
        assert seen["plant/a/d1/online"] == b"false"
        assert b"succeeded" in seen["plant/a/d1/status"]

    def test_killed_reporter_goes_offline_by_last_will(
        self, broker: Mosquitto, tmp_path: Path
    ) -> None:
        """kill -9 of a reporting process turns its presence false within seconds."""
        script = (
            "import sys, time\n"
            "from reconciler.report.broker import parse_broker\n"
            "from reconciler.report.mqtt import MqttReporter\n"
            "from reconciler.report.status import Status\n"
            f"r = MqttReporter(parse_broker({broker.url!r}, 't'), 'd9')\n"
            "r.start(); r.publish(Status(device='d9', outcome='succeeded'))\n"
            "while not r.stats().last_publish_at: time.sleep(0.05)\n"
            "print('up', flush=True); time.sleep(60)\n"
        )
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        try:
            assert child.stdout is not None
            while child.stdout.readline().strip() != b"up":  # structlog lines come first
                assert child.poll() is None, "the reporting process died"
            assert _retained(broker.url)["fleetgate/d9/online"] == b"true"
            child.kill()
            child.wait()
            wait_for(
                lambda: _retained(broker.url)["fleetgate/d9/online"] == b"false",
                timeout=10,
                what="the last will",
            )
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()

    def test_broker_down_never_blocks_and_latest_is_sent_when_back(self, tmp_path: Path) -> None:
        """With the broker down publish returns at once; the latest status arrives later."""
        (tmp_path / "late").mkdir()
        b = Mosquitto(tmp_path / "late")
        reporter = MqttReporter(_broker(b.url), "d1")
        reporter.start()
        try:
            started = time.monotonic()
            for n in range(200):
                reporter.publish(_status("d1", reason=f"pass {n}"))
            assert time.monotonic() - started < 0.5
            assert not reporter.stats().connected
            wait_for(lambda: reporter.stats().failures, timeout=10, what="a counted failure")
            b.start()
            try:
                wait_for(lambda: reporter.stats().last_publish_at, timeout=30, what="reconnect")
                seen = json.loads(_retained(b.url)["fleetgate/d1/status"])
                assert seen["reason"] == "pass 199"
            finally:
                reporter.stop()
                b.stop()
        finally:
            reporter.stop()


class TestReader:
    def test_reads_every_retained_status_beyond_the_brokers_queue(self, broker: Mosquitto) -> None:
        """A default Mosquitto (1,000 queued messages a client) hands the reader all 1,500
        retained statuses: it reads at QoS 0, which the broker never queues or drops."""
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="seed")
        client.max_inflight_messages_set(500)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        try:
            for n in range(1500):
                info = client.publish(f"fleetgate/d{n}/status", b"{}", qos=1, retain=True)
            info.wait_for_publish(30)
        finally:
            client.disconnect()
            client.loop_stop()
        started = time.monotonic()
        assert len(_retained(broker.url)) == 1500
        assert time.monotonic() - started < 5  # the end marker, not a fixed quiet time

    def test_loads_every_large_status_in_batches(self, broker: Mosquitto) -> None:
        """3,000 retained 4 KB statuses (12 MB, far past a default Mosquitto's per-client
        queue) all reach a reader that loads them in batches, strangers included (found
        through their online message); a wildcard subscription loses most of them."""
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="seed-large")
        client.max_inflight_messages_set(500)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        payload = json.dumps({"reason": "x" * 4000}).encode()
        try:
            for n in range(3000):
                client.publish(f"fleetgate/d{n}/status", payload, qos=1, retain=True)
                info = client.publish(f"fleetgate/d{n}/online", b"true", qos=1, retain=True)
            info.wait_for_publish(60)
        finally:
            client.disconnect()
            client.loop_stop()
        reader = FleetSubscription(_broker(broker.url), statuses=False)
        reader.start()
        try:
            loaded = reader.load([f"d{n}" for n in range(2500)])  # 500 strangers
        finally:
            reader.stop()
        assert sum(1 for t in loaded if t.endswith("/status")) == 3000
        flooded = _retained(broker.url)
        assert sum(1 for t in flooded if t.endswith("/status")) < 3000


class TestAcl:
    def test_a_device_cannot_overwrite_another_devices_status(self, secured: Mosquitto) -> None:
        """With the documented ACL, d1's write to d2's topics is dropped by the broker."""
        d2 = MqttReporter(_broker(secured.url, "d2"), "d2")
        d2.start()
        try:
            d2.publish(_status("d2", reason="genuine"))
            wait_for(lambda: d2.stats().last_publish_at, timeout=10, what="d2 publish")
        finally:
            d2.stop()
        forger = paho.Client(CallbackAPIVersion.VERSION2, client_id="forger")
        forger.username_pw_set("d1", USERS["d1"])
        forger.connect("127.0.0.1", secured.port)
        forger.loop_start()
        try:
            forger.publish("fleetgate/d2/status", b'{"device":"d2","reason":"forged"}', 1, True)
            ok = forger.publish("fleetgate/d1/status", b'{"device":"d1","reason":"own"}', 1, True)
            ok.wait_for_publish(5)
        finally:
            forger.disconnect()
            forger.loop_stop()
        seen = _retained(secured.url, VIEWER)
        assert json.loads(seen["fleetgate/d2/status"])["reason"] == "genuine"
        assert json.loads(seen["fleetgate/d1/status"])["reason"] == "own"

    def test_credentials_never_appear_in_logs_or_repr(self, secured: Mosquitto) -> None:
        """The password is in no log event and not in the broker's repr."""
        broker = _broker(secured.url, "d1")
        assert USERS["d1"] not in repr(broker)
        with capture_logs() as logs:
            reporter = MqttReporter(broker, "d1")
            reporter.start()
            reporter.publish(_status("d1"))
            wait_for(lambda: reporter.stats().last_publish_at, timeout=10, what="publish")
            reporter.stop()
        assert logs
        assert USERS["d1"] not in repr(logs)


class TestReportMetrics:
    def test_collector_exposes_the_reporter_stats(self) -> None:
        """connected, last publish and failures become the three fleetgate_report_* series."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ReportCollector(lambda: ReportStats(True, 1700000000.0, 3)))
        text = generate_latest(registry).decode()
        assert "fleetgate_report_connected 1.0" in text
        assert "fleetgate_report_last_publish_timestamp_seconds 1.7e+09" in text
        assert "fleetgate_report_failures_total 3.0" in text

    def test_agent_status_server_serves_report_series(self, tmp_path: Path) -> None:
        """The status server's /metrics shows the live reporter: connected after a publish,
        then disconnected with a failure counted once the broker stops."""
        with running_broker(tmp_path / "metrics") as broker:
            reporter = MqttReporter(_broker(broker.url), "d1", interval=1.0)
            server = StatusServer(
                "127.0.0.1:0",
                lambda: _status("d1"),
                lambda: None,
                metrics=[ReportCollector(reporter.stats)],
            )
            server.start()
            reporter.start()
            host, port = server.address

            def scrape() -> str:
                url = f"http://{host}:{port}/metrics"
                with urllib.request.urlopen(url, timeout=5) as response:
                    return str(response.read().decode())

            try:
                reporter.publish(_status("d1"))
                wait_for(lambda: reporter.stats().last_publish_at, timeout=10, what="publish")
                text = scrape()
                assert "fleetgate_report_connected 1.0" in text
                assert "fleetgate_report_last_publish_timestamp_seconds" in text
                assert "fleetgate_report_failures_total 0.0" in text
                assert 'fleetgate_passes_total{device="d1"}' in text  # the status series stay
                broker.stop()
                wait_for(
                    lambda: "fleetgate_report_connected 0.0" in scrape(),
                    timeout=15,
                    what="disconnected",
                )
                assert "fleetgate_report_failures_total 0.0" not in scrape()
            finally:
                reporter.stop(timeout=0.5)
                server.stop()
