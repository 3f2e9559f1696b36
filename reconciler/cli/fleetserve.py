"""`fleetgate fleet serve --broker URL --repo PATH [--listen 127.0.0.1:9280]`: the live
fleet page (registered by :mod:`reconciler.cli.fleet`).

Keeps one subscription to ``{topic}/+/status`` and ``{topic}/+/online`` open, so the view
follows reports as they arrive; the repository's device list is re-read at most once a
minute. Runs until SIGTERM / SIGINT (exit 0); a broker that cannot be reached at start
is exit 1, bad flags exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from reconciler.cli import EXIT_OK, add_repo_flags
from reconciler.cli.fleet import (
    add_broker_flags,
    broker_of,
    membership_of,
    release_of,
    repository_fleet,
)
from reconciler.errors import UsageError
from reconciler.fleet.reports import Report, reports_from_messages
from reconciler.fleet.serve import DEFAULT_LISTEN, FleetServer, now
from reconciler.fleet.view import FleetView, build_view, with_waves
from reconciler.fleet.waves import wave_summary
from reconciler.report.broker import check_topic
from reconciler.units import parse_duration

if TYPE_CHECKING:
    from reconciler.report.mqtt import FleetSubscription

REPO_REFRESH = 60.0


def register_serve(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="a live fleet page, /api/fleet and /metrics")
    serve.add_argument("--broker", required=True, help="MQTT broker: mqtt://HOST:PORT")
    add_broker_flags(serve)
    add_repo_flags(serve)
    serve.add_argument("--listen", default=DEFAULT_LISTEN, help=f"default {DEFAULT_LISTEN}")
    serve.add_argument("--stale-after", default="15m", help="a report older is stale")
    serve.set_defaults(handler=run_serve)


class _LiveFleet:
    """The view of the live subscription joined with the (periodically re-read) repository."""

    def __init__(
        self, args: argparse.Namespace, subscription: FleetSubscription, stale_after: float
    ) -> None:
        self._repo, self._ref = args.repo, args.ref
        self._subscription = subscription
        self._parsed: tuple[int, dict[str, Report]] = (-1, {})
        self._topic = args.topic
        self._stale_after = stale_after
        self._lock = threading.Lock()
        self._devices, self._head, self._rollout = repository_fleet(self._repo, self._ref)
        self._read_at = time.monotonic()

    @property
    def devices(self) -> list[str]:
        with self._lock:
            return list(self._devices)

    def view(self) -> FleetView:
        with self._lock:
            if time.monotonic() - self._read_at > REPO_REFRESH:
                self._read_at = time.monotonic()
                try:
                    fresh = repository_fleet(self._repo, self._ref)
                    self._devices, self._head, self._rollout = fresh
                except Exception as e:  # keep serving the last good device list
                    print(
                        f"fleetgate: warning: cannot re-read the repository: {e}", file=sys.stderr
                    )
            devices, head, rollout = self._devices, self._head, self._rollout
            version = self._subscription.version
            if self._parsed[0] != version:  # parse the reports once per change, not per request
                parsed, _ = reports_from_messages(self._subscription.messages(), self._topic)
                self._parsed = (version, parsed)
            reports = self._parsed[1]
        view = build_view(devices, reports, head=head, now=now(), stale_after=self._stale_after)
        return with_waves(view, membership_of(rollout, devices))

    def waves(self, view: FleetView) -> list[dict[str, Any]]:
        """Per wave its revision, devices running it, soak left and the next gate (as in
        ``fleet status --output json``); ``[]`` without ``rollout.waves``."""
        with self._lock:
            head, rollout = self._head, self._rollout
        release, passed = release_of(self._repo, head, rollout)
        return wave_summary(view, rollout, release, now(), passed)


def run_serve(args: argparse.Namespace) -> int:
    from reconciler.report.mqtt import FleetSubscription  # noqa: PLC0415  # paho when asked

    try:
        stale_after = parse_duration(args.stale_after)
    except ValueError as e:
        raise UsageError(f"--stale-after: {e}") from None
    topic = check_topic(args.topic, "--topic")
    broker = broker_of(args)
    subscription = FleetSubscription(broker, topic, statuses=False)
    live = None
    stop = threading.Event()
    subscription.start()
    try:
        live = _LiveFleet(args, subscription, stale_after)
        subscription.load(live.devices)  # the retained statuses, in batches any broker holds
        subscription.follow()
        server = FleetServer(args.listen, live.view, live.waves)
        server.start()
        host, port = server.address
        print(f"fleetgate: serving the fleet on http://{host}:{port}/", file=sys.stderr)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        server.stop()
    finally:
        subscription.stop()
    return EXIT_OK
