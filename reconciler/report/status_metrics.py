"""Prometheus metrics computed from the current status (served on ``GET /metrics``).

Series, every one labelled with ``device``:

``fleetgate_passes_total``, ``fleetgate_pass_outcomes_total{outcome}``,
``fleetgate_last_pass_outcome{outcome}``, ``fleetgate_last_pass_timestamp_seconds``,
``fleetgate_pass_duration_seconds`` (summary) and ``fleetgate_last_pass_duration_seconds``,
``fleetgate_revision_info{applied_revision,desired_revision,last_good_revision}``,
``fleetgate_in_sync``, ``fleetgate_failed_revisions``,
``fleetgate_service_running{stack,service}``, ``fleetgate_service_healthy{stack,service}``,
``fleetgate_services_running``, ``fleetgate_services_healthy``,
``fleetgate_source_fetch_errors_total``, ``fleetgate_source_last_success_timestamp_seconds``,
``fleetgate_source_stale``, ``fleetgate_pending_update``,
``fleetgate_next_window_timestamp_seconds``, ``fleetgate_agent_info{version}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from reconciler.report.status import Status


class StatusCollector(Collector):
    """Prometheus metrics computed from the current status on every scrape."""

    def __init__(self, provide: Callable[[], Status]) -> None:
        self._provide = provide

    def collect(self) -> Iterator[Metric]:
        s = self._provide()
        dev = [s.device]
        passes = CounterMetricFamily("fleetgate_passes", "Reconcile passes run", labels=["device"])
        passes.add_metric(dev, s.counters.passes_total)
        yield passes
        outcomes = CounterMetricFamily(
            "fleetgate_pass_outcomes", "Passes by outcome", labels=["device", "outcome"]
        )
        for outcome, count in s.counters.passes:
            outcomes.add_metric([s.device, outcome], count)
        yield outcomes
        last = GaugeMetricFamily(
            "fleetgate_last_pass_outcome", "1 for the last outcome", labels=["device", "outcome"]
        )
        if s.outcome is not None:
            last.add_metric([s.device, s.outcome], 1)
        yield last
        yield _gauge(
            "fleetgate_last_pass_timestamp_seconds",
            "End of the last pass",
            s.device,
            _epoch(s.pass_finished_at),
        )
        duration = SummaryMetricFamily(
            "fleetgate_pass_duration_seconds", "Time spent in passes", labels=["device"]
        )
        duration.add_metric(dev, s.counters.passes_total, s.counters.pass_seconds_total)
        yield duration
        yield _gauge(
            "fleetgate_last_pass_duration_seconds",
            "Duration of the last pass",
            s.device,
            s.counters.last_pass_seconds,
        )
        info = InfoMetricFamily("fleetgate_revision", "Desired, applied and last good revision")
        info.add_metric(
            [],
            {
                "device": s.device,
                "desired_revision": s.desired_revision or "",
                "applied_revision": s.applied_revision or "",
                "last_good_revision": s.last_good_revision or "",
            },
        )
        yield info
        in_sync = s.desired_revision is not None and s.desired_revision == s.applied_revision
        yield _gauge(
            "fleetgate_in_sync",
            "1 when the applied revision is the desired one",
            s.device,
            float(in_sync),
        )
        yield _gauge(
            "fleetgate_failed_revisions",
            "Revisions that failed their health gate",
            s.device,
            len(s.failed_revisions),
        )
        yield from self._services(s)
        errors = CounterMetricFamily(
            "fleetgate_source_fetch_errors", "Failed fetches of the source", labels=["device"]
        )
        errors.add_metric(dev, s.counters.fetch_errors)
        yield errors
        yield _gauge(
            "fleetgate_source_last_success_timestamp_seconds",
            "Last successful fetch",
            s.device,
            _epoch(s.fetch.succeeded_at),
        )
        yield _gauge(
            "fleetgate_source_stale",
            "1 when the source has not been fetched for long",
            s.device,
            float(s.stale),
        )
        pending = s.pending_update
        yield _gauge(
            "fleetgate_pending_update",
            "1 when an update waits for a window or lock",
            s.device,
            float(pending is not None),
        )
        yield _gauge(
            "fleetgate_next_window_timestamp_seconds",
            "When the next window opens",
            s.device,
            None if pending is None else _epoch(pending.next_window),
        )
        agent = InfoMetricFamily("fleetgate_agent", "The agent")
        agent.add_metric([], {"device": s.device, "version": s.agent_version})
        yield agent

    @staticmethod
    def _services(s: Status) -> Iterator[Metric]:
        labels = ["device", "stack", "service"]
        running = GaugeMetricFamily("fleetgate_service_running", "1 when running", labels=labels)
        healthy = GaugeMetricFamily(
            "fleetgate_service_healthy",
            "1 when healthy (or running without a healthcheck)",
            labels=labels,
        )
        total_running = total_healthy = 0
        for svc in s.services:
            up = svc.state == "running"
            ok = up and svc.health in (None, "healthy")
            total_running += up
            total_healthy += ok
            running.add_metric([s.device, svc.stack, svc.service], float(up))
            healthy.add_metric([s.device, svc.stack, svc.service], float(ok))
        yield running
        yield healthy
        yield _gauge(
            "fleetgate_services_running", "Managed containers running", s.device, total_running
        )
        yield _gauge(
            "fleetgate_services_healthy", "Managed containers healthy", s.device, total_healthy
        )


def _gauge(name: str, doc: str, device: str, value: float | None) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, doc, labels=["device"])
    if value is not None:
        gauge.add_metric([device], value)
    return gauge


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def render_metrics(provide: Callable[[], Status], extra: Iterable[Collector] = ()) -> bytes:
    """The Prometheus text exposition of the current status, plus the ``extra`` collectors
    (the MQTT reporter's ``fleetgate_report_*`` when the agent reports)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(provide))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)
