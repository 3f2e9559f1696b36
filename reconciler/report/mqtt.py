"""MQTT adapter (with ``mqttread``, the only home of paho-mqtt): the agent's reporter and
the fleet's reader.

Topics (DESIGN.md §6), prefix ``reportTopic``:

- ``{prefix}/{device}/status``: retained, QoS 1, exactly ``Status.to_json()``;
- ``{prefix}/{device}/online``: retained ``true`` on connect, ``false`` as the last will
  and on a clean stop.

The reporter never blocks a pass: :meth:`MqttReporter.publish` only stores the latest
status and wakes a background thread; paho's own network thread connects and reconnects
with backoff. While the broker is away nothing queues up: only the latest status is kept,
and it is sent as soon as the connection is back.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from reconciler.errors import FleetgateError
from reconciler.report.broker import DEFAULT_INTERVAL, DEFAULT_TOPIC, Broker, ReportStats
from reconciler.report.mqttread import ReaderClient
from reconciler.report.status import Status

KEEPALIVE = 30
BATCH = 300  # devices whose status one SUBSCRIBE asks for (see FleetSubscription.load)
SETTLE = 0.05  # s of silence after the end marker before the retained messages are read
_MAX_QUEUED = 8  # paho's own outgoing queue: a bound, never a backlog of old statuses


class _Publisher(Protocol):
    def publish(self, status: Status) -> None: ...


class BrokerUnreachable(FleetgateError):
    """The broker did not accept a connection (one line: address and reason)."""


def _client(broker: Broker, client_id: str, kind: type[paho.Client] = paho.Client) -> paho.Client:
    client = kind(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
    if broker.tls:
        context = ssl.create_default_context(cafile=str(broker.ca) if broker.ca else None)
        client.tls_set_context(context)
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    client.max_queued_messages_set(_MAX_QUEUED)
    client.reconnect_delay_set(1, 60)
    return client


def _failed(reason: Any) -> bool:
    return bool(reason.is_failure) if isinstance(reason, ReasonCode) else bool(reason)


class MqttReporter:
    """Publishes one device's status and presence; ``publish`` returns at once."""

    def __init__(
        self,
        broker: Broker,
        device: str,
        *,
        topic: str = DEFAULT_TOPIC,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.broker = broker
        self.device = device
        self.interval = interval
        self.status_topic = f"{topic}/{device}/status"
        self.online_topic = f"{topic}/{device}/online"
        self._log = structlog.get_logger().bind(device=device, broker=broker.url)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._latest: bytes | None = None
        self._sent: bytes | None = None
        self._sent_at = -float("inf")
        self._connected = False
        self._last_publish_at: float | None = None
        self._failures = 0
        self._pending: dict[int, float] = {}
        self._client = _client(broker, f"fleetgate-{device}")
        self._client.will_set(self.online_topic, b"false", qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_connect_fail = self._on_connect_fail
        self._thread = threading.Thread(target=self._run, name="mqtt-report", daemon=True)

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        """Connect in the background (a broker that is down is retried, never waited for)."""
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE)
        self._client.loop_start()
        self._thread.start()

    def publish(self, status: Status) -> None:
        """Keep ``status`` as the latest and wake the sender; never blocks on the network."""
        payload = json.dumps(status.to_json(), sort_keys=True).encode()
        with self._lock:
            self._latest = payload
        self._wake.set()

    def stats(self) -> ReportStats:
        with self._lock:
            return ReportStats(self._connected, self._last_publish_at, self._failures)

    def stop(self, timeout: float = 3.0) -> None:
        """Send the latest status and ``online false``, then disconnect (a clean stop)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            unsent = self._latest is not None and self._latest != self._sent
        deadline = time.monotonic() + timeout
        while unsent and not self._connected and time.monotonic() < deadline:
            time.sleep(0.05)  # a last status (e.g. after --once) gets a short chance to go out
        if self._connected:
            self._send_latest(force=True)
            info = self._client.publish(self.online_topic, b"false", qos=1, retain=True)
            deadline = time.monotonic() + timeout
            while not info.is_published() and self._connected and time.monotonic() < deadline:
                time.sleep(0.02)
        self._client.disconnect()
        self._client.loop_stop()

    # ------------------------------------------------------------------ threads

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=min(self.interval, 60.0))
            self._wake.clear()
            if self._stop.is_set():
                return
            self._send_latest(force=False)

    def _send_latest(self, *, force: bool) -> None:
        with self._lock:
            payload, connected = self._latest, self._connected
            due = time.monotonic() - self._sent_at >= self.interval
            if (
                payload is None
                or not connected
                or (payload == self._sent and not due and not force)
            ):
                return
            self._sent, self._sent_at = payload, time.monotonic()
        info = self._client.publish(self.status_topic, payload, qos=1, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            with self._lock:
                self._sent = None  # try again on the next wake or reconnect
            return
        with self._lock:
            self._pending[info.mid] = time.time()

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if _failed(reason):
            with self._lock:
                self._failures += 1
            self._log.warning("report.refused", reason=str(reason))
            return
        with self._lock:
            self._connected = True
            self._sent = None  # the broker may have lost it: send the latest again
        client.publish(self.online_topic, b"true", qos=1, retain=True)
        self._log.info("report.connected")
        self._wake.set()

    def _on_connect_fail(self, _c: paho.Client, _u: Any) -> None:
        with self._lock:
            self._failures += 1

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._lock:
            was = self._connected
            self._connected = False
            self._pending.clear()
            if not self._stop.is_set():
                self._failures += 1
        if was and not self._stop.is_set():
            self._log.warning("report.disconnected", reason=str(reason))

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        with self._lock:
            if mid in self._pending:
                self._last_publish_at = time.time()
                del self._pending[mid]


class FleetSubscription:
    """The retained and live ``status``/``online`` messages of every device under a prefix.

    ``messages()`` is a snapshot ``{topic: payload}``; ``changed_at`` the monotonic time of
    the last message, ``version`` counts them.

    Brokers hand a new subscription all its retained messages at once, and drop what does
    not fit their per-client queue (a default Mosquitto: 1,000 messages; 10,000 statuses of
    2 KB overflow it at any QoS). So the reader subscribes to every device's ``online``
    (a few bytes each) with a wildcard, and with ``statuses=False`` leaves the statuses to
    :meth:`load`, which asks for them device by device in batches small enough for any
    broker's queue. The end of each step is the answer to a later SUBSCRIBE: a broker
    answers SUBSCRIBEs in order, after the retained messages of the earlier ones.
    """

    def __init__(
        self, broker: Broker, topic: str = DEFAULT_TOPIC, *, statuses: bool = True
    ) -> None:
        self.broker = broker
        self.topic = topic
        self._statuses = statuses
        self._lock = threading.Lock()
        self._messages: dict[str, bytes] = {}
        self._subscribed = threading.Event()
        self._acks = threading.Condition()
        self._acked: set[int] = set()
        self._marker_mid: int | None = None
        self._refused: str | None = None
        self.changed_at = time.monotonic()
        self.version = 0
        self._asked: set[str] = set()  # devices whose status was asked for (load, prefetch)
        self._prefetch: threading.Thread | None = None
        self._client = _client(broker, "", ReaderClient)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; :class:`BrokerUnreachable` when that fails within ``timeout``."""
        try:
            self._client.connect(self.broker.host, self.broker.port, keepalive=KEEPALIVE)
        except (OSError, ssl.SSLError, ValueError) as e:
            reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
            raise BrokerUnreachable(
                f"cannot reach the broker {self.broker.url}: {reason}"
            ) from None
        self._client.loop_start()
        if not self._subscribed.wait(timeout) or self._refused is not None:
            self.stop()
            why = self._refused or f"no answer within {timeout:.0f}s"
            raise BrokerUnreachable(f"the broker {self.broker.url} refused the reader: {why}")
        if not self._statuses:  # ask for the reporters' statuses while the caller reads
            self._prefetch = threading.Thread(  # the repository; load() asks for the rest
                target=self._ask_reporting, args=(time.monotonic() + 60.0,), daemon=True
            )
            self._prefetch.start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def messages(self) -> Mapping[str, bytes]:
        with self._lock:
            return dict(self._messages)

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if _failed(reason):
            self._refused = str(reason)
            self._subscribed.set()
            return
        # QoS 0: a broker writes QoS 0 messages to a connected reader at once and in order,
        # where QoS 1 ones beyond its in-flight window wait in the queue.
        wanted = [(f"{self.topic}/+/online", 0)]
        if self._statuses:
            wanted.append((f"{self.topic}/+/status", 0))
        client.subscribe(wanted)
        # No device id starts with "-": nothing is retained there; its answer marks the end.
        self._marker_mid = client.subscribe(f"{self.topic}/-/end-of-retained", 0)[1]

    def _on_subscribe(self, _c: paho.Client, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        with self._acks:
            self._acked.add(mid)
            self._acks.notify_all()
        if mid == self._marker_mid or self._subscribed.is_set():
            return
        if any(_failed(code) for code in codes):
            self._refused = "subscription not allowed (check the broker's ACL for this user)"
        self.changed_at = time.monotonic()
        self._subscribed.set()

    def _answered(self, mid: int | None, deadline: float) -> bool:
        with self._acks:
            return self._acks.wait_for(
                lambda: mid is not None and mid in self._acked,
                max(0.0, deadline - time.monotonic()),
            )

    def retained(self, *, quiet: float = 0.5, timeout: float = 10.0) -> Mapping[str, bytes]:
        """The messages once the broker has sent every retained one of the subscriptions
        made so far: it answered the end marker, then none came for ``SETTLE`` s (a broker
        that does not keep that order still gets ``quiet`` s of silence). The retained
        messages arrive in the background from :meth:`start` on, so a caller can read the
        repository meanwhile."""
        deadline = time.monotonic() + timeout
        if self._answered(self._marker_mid, deadline):
            quiet = min(quiet, SETTLE)
        while time.monotonic() < deadline and time.monotonic() - self.changed_at < quiet:
            time.sleep(0.01)
        return self.messages()

    def load(self, devices: Iterable[str], timeout: float = 60.0) -> Mapping[str, bytes]:
        """The retained statuses of ``devices`` and of every device with a retained
        ``online``, asked for ``BATCH`` devices at a time (the next batch once the broker
        answered the one before it, so at most two batches' messages wait in its queue).
        The reporters' statuses were asked for from :meth:`start` on; only the rest here."""
        deadline = time.monotonic() + timeout
        if self._prefetch is not None:
            self._prefetch.join(max(0.0, deadline - time.monotonic()))
        self._ask(self._reporting(deadline) | set(devices), deadline)
        self._marker_mid = self._client.subscribe(f"{self.topic}/-/end-of-retained", 0)[1]
        return self.retained(timeout=max(0.0, deadline - time.monotonic()))

    def _reporting(self, deadline: float) -> set[str]:
        """The devices with a retained ``online``, once the broker sent them all."""
        online = self.retained(timeout=max(0.0, deadline - time.monotonic()))
        suffix = "/online"
        return {
            t[len(self.topic) + 1 : -len(suffix)]
            for t in online
            if t.startswith(self.topic + "/") and t.endswith(suffix)
        }

    def _ask_reporting(self, deadline: float) -> None:
        self._ask(self._reporting(deadline), deadline)

    def _ask(self, devices: set[str], deadline: float) -> None:
        """Subscribe to the status of each of ``devices`` not asked for yet, ``BATCH`` at a
        time; returns once the broker answered the last batch (or at ``deadline``)."""
        wanted = sorted(devices - self._asked)
        self._asked.update(wanted)
        previous: int | None = None
        for start in range(0, len(wanted), BATCH):
            batch = [(f"{self.topic}/{d}/status", 0) for d in wanted[start : start + BATCH]]
            mid = self._client.subscribe(batch)[1]
            if previous is not None and not self._answered(previous, deadline):
                return
            previous = mid
        if previous is not None:
            self._answered(previous, deadline)

    def follow(self) -> None:
        """From now on, every device's status as it is published (``fleet serve``)."""
        self._statuses = True
        self._client.subscribe(f"{self.topic}/+/status", 0)

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            if message.payload:
                self._messages[message.topic] = bytes(message.payload)
            else:  # an empty retained message clears the topic
                self._messages.pop(message.topic, None)
            self.changed_at = time.monotonic()
            self.version += 1


def read_retained(
    broker: Broker, topic: str = DEFAULT_TOPIC, *, quiet: float = 0.5, timeout: float = 10.0
) -> Mapping[str, bytes]:
    """Every retained message under the prefix, through wildcards: for small fleets and
    tests (a large fleet reads with :meth:`FleetSubscription.load`)."""
    reader = FleetSubscription(broker, topic)
    reader.start(timeout)
    try:
        return reader.retained(quiet=quiet, timeout=timeout)
    finally:
        reader.stop()


class ReportingPublisher:
    """The agent's publisher with MQTT reporting: the status goes to the reporter (which
    never blocks or raises), then to the wrapped publisher (``status.json``)."""

    def __init__(self, inner: _Publisher, reporter: MqttReporter) -> None:
        self.inner = inner
        self.reporter = reporter

    def publish(self, status: Status) -> None:
        self.reporter.publish(status)
        self.inner.publish(status)
