"""Waiting on a running agent's ``/status`` and showing what it reports."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo_procs import Processes
from demo_tools import (
    FLEETGATE,
    DemoError,
    Settings,
    http_get,
    run,
    say,
    short,
    show,
    wait_for,
)

# ------------------------------------------------------------------ waiting on status


@dataclass
class Agent:
    """Reads the running agent's ``/status``."""

    procs: Processes
    status_port: int
    log: Path  # the agent's log file, which names it in ``procs``

    def status(self) -> dict[str, Any] | None:
        self.procs.check_agent(self.log)
        try:
            code, body = http_get(f"http://127.0.0.1:{self.status_port}/status", timeout=5.0)
        except (OSError, urllib.error.URLError):
            return None
        if code != 200:
            return None
        data = json.loads(body)
        return data if isinstance(data, dict) else None


def healthy_services(status: Mapping[str, Any]) -> bool:
    services = status.get("services") or []
    return bool(services) and all(
        s.get("state") == "running" and s.get("health") in (None, "healthy") for s in services
    )


def failed_reason(status: Mapping[str, Any], revision: str) -> str | None:
    for entry in status.get("failed_revisions") or []:
        if entry.get("revision") == revision:
            return str(entry.get("reason", ""))
    return None


def converged(agent: Agent, revision: str) -> Callable[[], dict[str, Any] | None]:
    """``revision`` applied, last good, the last pass succeeded and every service healthy."""

    def check() -> dict[str, Any] | None:
        st = agent.status()
        if st is None:
            return None
        reason = failed_reason(st, revision)
        if reason is not None:
            raise DemoError(f"revision {short(revision)} failed on the device: {reason}")
        if st.get("desired_revision") == revision and st.get("outcome") == "rejected":
            raise DemoError(f"the agent rejected {short(revision)}: {st.get('reason')}")
        ok = (
            st.get("applied_revision") == revision
            and st.get("last_good_revision") == revision
            and st.get("outcome") == "succeeded"
            and healthy_services(st)
        )
        return st if ok else None

    return check


def rolled_back(
    agent: Agent, bad: str, good: str, before: int
) -> Callable[[], dict[str, Any] | None]:
    """``bad`` recorded as failed, the agent's own rollback counted, ``good`` running healthy."""

    def check() -> dict[str, Any] | None:
        st = agent.status()
        if st is None:
            return None
        if st.get("outcome") == "rollback-failed":
            raise DemoError(f"the agent could not roll back: {st.get('reason')}")
        ok = (
            failed_reason(st, bad) is not None
            and rollbacks(st) > before
            and st.get("applied_revision") == good
            and st.get("last_good_revision") == good
            and healthy_services(st)
        )
        return st if ok else None

    return check


def rollbacks(status: Mapping[str, Any]) -> int:
    passes = (status.get("counters") or {}).get("passes") or {}
    return int(passes.get("rolled-back", 0))


def log_events(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a log, also when two threads' lines ran together on one line."""
    decoder = json.JSONDecoder()
    events: list[dict[str, Any]] = []
    for line in text.splitlines():
        at = 0
        while at < len(line):
            try:
                event, at = decoder.raw_decode(line, at)
            except ValueError:
                break
            if isinstance(event, dict):
                events.append(event)
    return events


def show_rollback_log(s: Settings, bad: str) -> None:
    """The agent's own log of the pass that tried ``bad`` and rolled back (a few lines)."""
    events = log_events((s.dir / "agent.log").read_text(errors="replace"))
    start = next(
        (
            i
            for i, e in enumerate(events)
            if e.get("event") == "pass.started" and e.get("revision") == bad
        ),
        None,
    )
    if start is None:
        return
    say(f"what the agent logged while it tried {short(bad)} ({s.shown(s.dir / 'agent.log')})")
    for e in events[start:]:
        clock = str(e.get("timestamp", ""))[11:19]
        name = e.get("event")
        if name == "step.applied" and e.get("step") in (
            "pull",
            "stop",
            "remove",
            "create",
            "start",
        ):
            text = f"{e['step']:<8} {e.get('service', '')}  ({e.get('reason', '')})"
        elif name == "health.verified":
            verdict = "healthy" if e.get("healthy") else f"FAILED: {e.get('reason', '')}"
            text = f"health   {short(str(e.get('target')))} {verdict}"
        elif name == "rollback.started":
            text = f"rollback to the last good revision {short(str(e.get('to')))}"
        elif name == "pass.finished":
            text = f"outcome  {e.get('outcome')}"
        else:
            continue
        show(f"{clock}  {text}")
        if name == "pass.finished":
            break


def show_status(s: Settings) -> None:
    say(f"fleetgate status --device {s.device} --state-dir {s.shown(s.state)}")
    out = run([FLEETGATE, "status", "--device", s.device, "--state-dir", s.state]).stdout
    show(out)


def show_dashboard(s: Settings) -> str:
    """Wait until the dashboard serves the page and a reading; print both; return the reading."""
    say(f"the dashboard answers on {s.dashboard}")

    def reading() -> str | None:
        with contextlib.suppress(OSError, urllib.error.URLError):
            code, page = http_get(s.dashboard)
            data_code, latest = http_get(s.dashboard + "data/latest.json")
            if code == 200 and b"<title>" in page and data_code == 200:
                return latest.decode().strip()
        return None

    latest = wait_for(reading, 30, f"the dashboard on {s.dashboard}")
    show(f"GET {s.dashboard}                -> 200, the page 'fleetgate demo dashboard'")
    show(f"GET {s.dashboard}data/latest.json -> {latest}")
    return latest
