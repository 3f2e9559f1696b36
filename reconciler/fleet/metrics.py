"""Prometheus series of the fleet view (``fleet serve``'s ``/metrics``); pure text."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reconciler.fleet.view import FleetView


class _FleetCollector(Collector):
    def __init__(self, view: FleetView) -> None:
        self.view = view

    def collect(self) -> Iterator[GaugeMetricFamily]:
        devices = GaugeMetricFamily(
            "fleetgate_fleet_devices",
            "Devices of the repository by wave and last outcome (none: never reported).",
            labels=["wave", "outcome"],
        )
        counts = Counter((r.wave, r.outcome or "none") for r in self.view.devices)
        for (wave, outcome), n in sorted(counts.items()):
            devices.add_metric([wave, outcome], n)
        yield devices
        behind = sum(1 for r in self.view.devices if "behind" in r.categories(self.view.head))
        yield GaugeMetricFamily(
            "fleetgate_fleet_devices_behind",
            "Devices whose applied revision is not the repository head.",
            value=behind,
        )
        offline = sum(1 for r in self.view.devices if "offline" in r.categories(self.view.head))
        yield GaugeMetricFamily(
            "fleetgate_fleet_devices_offline",
            "Devices whose presence is false or whose last report is stale.",
            value=offline,
        )


def render_fleet_metrics(view: FleetView) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FleetCollector(view))
    return generate_latest(registry)
