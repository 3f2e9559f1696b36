"""The agent's reporter on its ``/metrics``: connected, last publish, failures.

Wiring: ``cli/agent.py`` hands ``ReportCollector(reporter.stats)`` to the
:class:`reconciler.report.http.StatusServer` (``metrics=``), whose ``/metrics`` registers it
beside the status collector when the agent reports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reconciler.report.broker import ReportStats

ReportStatsProvider = Callable[[], ReportStats]


class ReportCollector(Collector):
    """The agent's reporter on its ``/metrics`` (register it beside the status collector)."""

    def __init__(self, stats: ReportStatsProvider) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.stats()
        yield GaugeMetricFamily(
            "fleetgate_report_connected",
            "1 while the agent is connected to its MQTT broker.",
            value=1.0 if now.connected else 0.0,
        )
        if now.last_publish_at is not None:
            yield GaugeMetricFamily(
                "fleetgate_report_last_publish_timestamp_seconds",
                "Unix time the broker last acknowledged this device's status.",
                value=now.last_publish_at,
            )
        yield GaugeMetricFamily(
            "fleetgate_report_failures_total",
            "Broker connections lost or refused since the agent started.",
            value=float(now.failures),
        )
