"""`fleetgate status [--state-dir DIR] [--device ID] [--output json]`: what runs here.

Reads the status the agent published (``{state}/devices/{device}/status.json``; before
the agent ever ran, the bare device record in ``state.json``) and, unless ``--offline``,
replaces its services with a live snapshot of the engine when the engine answers.
Prints applied / desired / last good revision, failed revisions, the last outcome and
its reason, every service (image, digest, state, health), a pending update with the
next window, the source's last fetch (error, staleness) and the agent's warnings about
its own configuration (``WARNING`` lines, e.g. unsigned-and-unrestricted). Exit 0 (also when nothing
is known yet); 2 usage.

``--device`` defaults to ``FLEETGATE_DEVICE``, else the only device in the state
directory, else the host name. JSON: the status contract of :mod:`reconciler.report.status`
plus ``live`` (services observed just now) and ``source`` (``status.json``,
``state.json`` or ``none``).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.cli import EXIT_OK, add_output_flag, state_dir_of
from reconciler.cli.output import emit
from reconciler.engine.docker import DockerEngine
from reconciler.errors import EngineError
from reconciler.model import rfc3339
from reconciler.report.http import read_status
from reconciler.report.status import Status, build_status, status_path
from reconciler.store import StateStore

LIVE_TIMEOUT = 5.0
"""Seconds the live engine snapshot may take before the published services are shown."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="what runs here: applied / desired / last good revision",
        description="Show what the agent last reported for this device, with live services.",
    )
    parser.add_argument("--device", default=None, help="device id (default: see --help)")
    parser.add_argument(
        "--state-dir", default=None, help="state directory (default: $FLEETGATE_STATE_DIR)"
    )
    parser.add_argument("--docker-host", default=None, help="engine URL (default: DOCKER_HOST)")
    parser.add_argument(
        "--offline", action="store_true", help="do not ask the engine; show published services"
    )
    add_output_flag(parser)
    parser.set_defaults(handler=run)


def device_of(args: argparse.Namespace, state: Path) -> str:
    """``--device``, ``FLEETGATE_DEVICE``, the only device in ``state``, or the host name."""
    chosen = args.device or os.environ.get("FLEETGATE_DEVICE")
    if chosen:
        return str(chosen)
    folder = state / "devices"
    known = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    return known[0] if len(known) == 1 else socket.gethostname().split(".")[0].lower()


def load(state: Path, device: str, now: datetime) -> tuple[Status, str]:
    """The published status, else one built from the device record: (status, where from)."""
    path = status_path(state, device)
    try:
        published = read_status(path)
    except ValueError as e:
        print(f"fleetgate: {e}; showing the device record instead", file=sys.stderr)
        published = None
    if published is not None:
        return published, "status.json"
    store = StateStore(state, device)
    if not store.path.is_file():
        return Status(device=device, agent_version=""), "none"
    return build_status(store.load(), now=now), "state.json"


def run(args: argparse.Namespace) -> int:
    state = state_dir_of(args)
    device = device_of(args, state)
    now = datetime.now(UTC)
    status, source = load(state, device, now)
    live, engine_error = False, None
    if not args.offline:
        engine = DockerEngine(args.docker_host, timeout=LIVE_TIMEOUT)
        try:
            status = status.with_services(engine.observe(device), now)
            live = True
        except EngineError as e:
            engine_error = str(e)
        finally:
            engine.close()
    if args.output == "json":
        document = {**status.to_json(), "live": live, "source": source}
        emit(document, sort_keys=True)
        return EXIT_OK
    emit(describe(status, source=source, live=live, engine_error=engine_error))
    return EXIT_OK


def describe(
    status: Status, *, source: str, live: bool, engine_error: str | None = None
) -> list[str]:
    """The status for a person, one fact per line."""
    s = status
    lines = [
        f"device      {s.device}" + ("  (agent " + s.agent_version + ")" if s.agent_version else "")
    ]
    if source == "none":
        lines.append("            nothing recorded yet: the agent has not run on this device")
    lines += [
        f"desired     {s.desired_revision or '-'}",
        f"applied     {s.applied_revision or '-'}"
        + ("" if _same(s.applied_revision, s.desired_revision) else "  (not the desired one)"),
        f"last good   {s.last_good_revision or '-'}",
    ]
    if s.outcome is not None:
        where = f" at {s.stage}" if s.stage else ""
        when = f" ({rfc3339(s.pass_finished_at)})" if s.pass_finished_at else ""
        lines.append(f"last pass   {s.outcome}{where}{when}")
        if s.reason:
            lines.append(f"            {s.reason}")
    if s.pending_update is not None:
        p = s.pending_update
        opens = f"; next window {rfc3339(p.next_window)}" if p.next_window else ""
        lines.append(f"pending     {p.revision} waits: {p.reason}{opens}")
    fetch = s.fetch
    if fetch.attempted_at is not None:
        result = "ok" if fetch.error is None else f"failed: {fetch.error}"
        lines.append(f"source      fetched {rfc3339(fetch.attempted_at)}: {result}")
        if fetch.error is not None and fetch.succeeded_at is not None:
            lines.append(f"            last success {rfc3339(fetch.succeeded_at)}")
    if s.stale:
        lines.append("            STALE: the repository has not been reached for a while")
    for failed in s.failed_revisions:
        lines.append(f"failed      {failed.revision} ({rfc3339(failed.at)}): {failed.reason}")
    lines.extend(f"WARNING     {warning}" for warning in s.warnings)
    lines.extend(_services(s, live=live, engine_error=engine_error))
    return lines


def _services(s: Status, *, live: bool, engine_error: str | None) -> list[str]:
    if live:
        head = "services    (live)"
    elif s.observed_at is not None:
        head = f"services    (as of {rfc3339(s.observed_at)})"
    else:
        head = "services    (never observed)"
    if engine_error:
        head += f"; engine not answering: {engine_error}"
    lines = [head]
    if not s.services:
        lines.append("            none")
    for svc in s.services:
        health = svc.health or "no healthcheck"
        restarts = f", {svc.restart_count} restarts" if svc.restart_count else ""
        lines.append(f"  {svc.stack}/{svc.service}: {svc.state} ({health}{restarts})")
        lines.append(f"      image  {svc.image}")
        if svc.image_digest and svc.image_digest != svc.image:
            lines.append(f"      digest {svc.image_digest}")
    return lines


def _same(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b
