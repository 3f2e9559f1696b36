"""`fleetgate agent [--config FILE] [--once] [--<key> VALUE ...]`: the daemon on each device.

The composition root of the agent: resolves the configuration (file, ``FLEETGATE_*``
environment, flags; see :mod:`reconciler.agent.config`), builds the real adapters (the
Docker engine twice: one connection for passes, one held by the event stream; the
state store; the Git source; the status publishers) and the triggers (Docker events,
file events on a local repository path and the ``watch`` folders, SIGHUP, the HTTP
nudge), then runs :class:`reconciler.agent.loop.Agent` until SIGTERM / SIGINT. Exit 0 after
a stop; with ``--once``, one pass and exit 0 when it converged, 1 otherwise.
Bad configuration: one line on stderr, exit 2. At start, every warning of
:func:`reconciler.agent.config.config_warnings` (no ``allowedSigners`` and no local
policy) and a status port bound beyond loopback are one ``fleetgate: warning:`` line
each on stderr, besides their log events.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reconciler.agent.config import (
    HELP,
    KEYS,
    AgentConfig,
    config_warnings,
    dest_name,
    environment,
    flag_name,
)
from reconciler.agent.config import load_config as load_agent_config
from reconciler.agent.loop import Agent, FileStatus, StatusPublisher
from reconciler.agent.triggers import EngineEventWatch, FileWatch, Wakeup, install_signal_handlers
from reconciler.cli import EXIT_FAILED, EXIT_OK
from reconciler.engine.docker import DockerEngine
from reconciler.report.http import StatusServer, exposure_warning
from reconciler.source import is_url
from reconciler.store import StateStore


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "agent",
        help="the daemon on each device: pull, gate, converge, heal, report",
        description=(
            "Poll the fleet repository and keep this device converged. Every option is "
            "also a key of the configuration file and a FLEETGATE_* environment variable; "
            "flags win over the environment, which wins over the file."
        ),
    )
    parser.add_argument(
        "--config", default=None, help="configuration file (default /etc/fleetgate/agent.yaml)"
    )
    parser.add_argument("--once", action="store_true", help="run one pass and exit")
    for key in KEYS:
        if key == "watch":
            parser.add_argument(
                flag_name(key), dest=dest_name(key), action="append", help=HELP[key]
            )
        else:
            parser.add_argument(flag_name(key), dest=dest_name(key), default=None, help=HELP[key])
    parser.set_defaults(handler=run)


def load_config(args: argparse.Namespace) -> AgentConfig:
    flags = {key: getattr(args, dest_name(key)) for key in KEYS}
    return load_agent_config(args.config, environment(), flags)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    for warning in config_warnings(config):
        print(f"fleetgate: warning: {warning}", file=sys.stderr)
    runtime = DockerEngine(config.docker_host)
    store = StateStore(config.state_dir, config.device)
    publisher: StatusPublisher = FileStatus(config.state_dir)
    reporter = None  # fleet reporting (DESIGN.md §6): MQTT off the pass path
    if config.report is not None:
        from reconciler.report.mqtt import MqttReporter, ReportingPublisher  # noqa: PLC0415  # paho only when reporting

        reporter = MqttReporter(
            config.report, config.device, topic=config.report_topic, interval=config.report_interval
        )
        publisher = ReportingPublisher(publisher, reporter)
        reporter.start()
    if args.once:
        status = Agent(config, runtime=runtime, store=store, publisher=publisher).run(once=True)
        runtime.close()
        if reporter is not None:
            reporter.stop()
        return EXIT_OK if status.outcome == "succeeded" else EXIT_FAILED
    wakeup = Wakeup()
    events_engine = DockerEngine(config.docker_host)
    watcher = EngineEventWatch(events_engine, config.device, wakeup, max_backoff=config.max_backoff)
    agent = Agent(
        config,
        runtime=runtime,
        store=store,
        publisher=publisher,
        wakeup=wakeup,
        events_connected=watcher.connected,
    )
    folders = [(folder, "watch") for folder in config.watch]
    if not is_url(config.repo):
        folders.append((Path(config.repo), "repo"))
    files = FileWatch(wakeup, folders)
    install_signal_handlers(on_hup=lambda: agent.nudge("sighup"), on_term=agent.request_stop)
    token = config.status_token
    # fleetgate_report_* beside the status series while the agent reports
    metrics = []
    if reporter is not None:
        from reconciler.report.metrics import ReportCollector  # noqa: PLC0415  # prometheus_client

        metrics.append(ReportCollector(reporter.stats))
    server = StatusServer(
        config.status_listen, agent.status, agent.nudge, token=token, metrics=metrics
    )
    exposed = exposure_warning(config.status_listen, token=token is not None)
    if exposed is not None:
        print(f"fleetgate: warning: {exposed}", file=sys.stderr)
    server.start()
    watcher.start()
    files.start()
    try:
        agent.run()
    finally:
        files.stop()
        watcher.stop()
        server.stop()
        if reporter is not None:
            reporter.stop()
        events_engine.close()
        runtime.close()
    return EXIT_OK
