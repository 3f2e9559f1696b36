"""The idle agent's footprint (issue 13, point 4): what it loads, what it gives back.

Figures are measured by ``bench/footprint.py``; these tests only guard the mechanisms
in a fresh interpreter each (an import already made by another test cannot count).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

NOT_AT_START = ("git", "prometheus_client", "jsonschema", "paho", "watchdog")
"""Packages the agent must not import to start: GitPython (git runs through
subprocess), prometheus_client (until /metrics is scraped), jsonschema (until a
revision is validated), paho (only when reporting), watchdog (only when a folder is
watched)."""


def _fresh(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


class TestAgentImports:
    def test_starting_the_agent_loads_none_of_the_lazy_packages(self) -> None:
        """Importing everything ``fleetgate agent`` builds loads neither GitPython nor
        prometheus_client, jsonschema, paho or watchdog."""
        loaded = json.loads(
            _fresh(
                """
                import json, sys
                import reconciler.cli.agent
                from reconciler.cli import main
                print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
                """
            )
        )
        assert "reconciler" in loaded
        assert [name for name in NOT_AT_START if name in loaded] == []

    def test_a_metrics_scrape_loads_prometheus_client_then(self) -> None:
        """``GET /metrics`` still answers Prometheus text: the lazy import happens then."""
        out = _fresh(
            """
            import sys, urllib.request
            from datetime import UTC, datetime
            from reconciler.record import DeviceRecord
            from reconciler.report.http import StatusServer
            from reconciler.report.status import build_status
            now = datetime.now(UTC)
            status = build_status(DeviceRecord(device="d1"), now=now, heartbeat_at=now)
            server = StatusServer("127.0.0.1:0", lambda: status, lambda: None)
            server.start()
            before = "prometheus_client" in sys.modules
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{server.address[1]}/metrics").read()
            finally:
                server.stop()
            print(before, "prometheus_client" in sys.modules, b"fleetgate_passes_total" in body)
            """
        )
        assert out.splitlines()[-1].split() == ["False", "True", "True"]


class TestReleaseFreedMemory:
    def test_freed_heap_pages_go_back_to_the_system(self) -> None:
        """Memory freed in the middle of the C heap leaves the process's RSS after the call."""
        out = _fresh(
            """
            from reconciler.agent.memory import release_freed_memory
            def rss():
                for line in open("/proc/self/status"):
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
            blocks = [bytes(1024) + bytes([i % 256]) for i in range(30000)]  # ~30 MB, malloc
            pin = [bytes(1024) for _ in range(16)]  # allocated above them: no trim at free
            del blocks
            freed = rss()
            released = release_freed_memory()
            print(released, freed - rss())
            """
        )
        released, dropped_kb = out.split()
        assert released == "True"
        assert int(dropped_kb) > 15_000
