"""The demo's processes (git daemon, agents), its Docker objects, and ``--clean``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo_fleet import FleetView
from demo_tools import (
    FLEETGATE,
    GIT_ENV,
    IMAGES,
    DemoError,
    Settings,
    answers,
    free_port,
    remove_path,
    run,
    stop_pid,
    wait_for,
)

# ------------------------------------------------------------ the demo's processes


def started(proc: subprocess.Popen[bytes], port: int) -> Callable[[], bool | None]:
    """True once ``port`` answers, False when ``proc`` exited, else None (wait on)."""

    def check() -> bool | None:
        if answers(port):
            return True
        return False if proc.poll() is not None else None

    return check


def stop_leftovers(s: Settings) -> None:
    """Stop the agents / git daemon that an interrupted earlier run left behind."""
    try:
        record = json.loads(s.run_file.read_text())
    except (OSError, ValueError):
        return
    pids = [record.get("daemon_pid"), *(record.get("agent_pids") or [])]
    for pid in pids:
        if isinstance(pid, int):
            stop_pid(pid, str(s.dir))


def agent_env() -> dict[str, str]:
    """The environment without FLEETGATE_* agent settings: the demo's config file decides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGATE_")}
    env.update(GIT_ENV)
    return env


def agent_config(
    device: str,
    url: str,
    state: Path,
    status_port: int,
    broker: str,
    *,
    report_interval: str = "30s",
    topic: str | None = None,
) -> str:
    """An agent's configuration file (the keys of docs/agent.md), demo-sized: a 2 s poll."""
    return (
        "# The demo agent's configuration (written by scripts/demo; see docs/agent.md).\n"
        f"device: {device}\n"
        f"repo: {url}\n"
        "ref: main\n"
        "pollInterval: 2s\n"
        f"stateDir: {state}\n"
        f"statusListen: 127.0.0.1:{status_port}\n"
        "healthTimeout: 1m\n"
        f"report: {broker}\n"
        f"reportInterval: {report_interval}\n" + (f"reportTopic: {topic}\n" if topic else "")
    )


@dataclass
class Processes:
    """The git daemon and the agents of one run; :meth:`stop` ends them (SIGTERM first)."""

    s: Settings
    daemon: subprocess.Popen[bytes] | None = None
    agents: dict[Path, subprocess.Popen[bytes]] = field(default_factory=dict)  # by log file
    agent_exits: dict[Path, int | None] = field(default_factory=dict)
    logs: list[Any] = field(default_factory=list)

    def record(self) -> None:
        self.s.run_file.write_text(
            json.dumps(
                {
                    "device": self.s.device,
                    "port": self.s.port,
                    "agent_pids": [a.pid for a in self.agents.values()],
                    "daemon_pid": self.daemon.pid if self.daemon else None,
                }
            )
        )

    def start_daemon(self) -> int:
        log = (self.s.dir / "git-daemon.log").open("wb")
        self.logs.append(log)
        for _ in range(5):
            port = free_port()
            self.daemon = subprocess.Popen(
                [
                    "git",
                    "daemon",
                    "--reuseaddr",
                    "--export-all",
                    "--informative-errors",
                    f"--base-path={self.s.served}",
                    "--listen=127.0.0.1",
                    f"--port={port}",
                    str(self.s.served),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, **GIT_ENV},
            )
            self.record()
            if wait_for(started(self.daemon, port), 15, f"git daemon on 127.0.0.1:{port}"):
                return port
        log_name = self.s.shown(self.s.dir / "git-daemon.log")
        raise DemoError(f"git daemon did not start (see {log_name})")

    def start_agent(self, config: Path, log_path: Path) -> None:
        """``fleetgate agent --config CONFIG`` in the background, logging to ``log_path``."""
        log = log_path.open("wb")
        self.logs.append(log)
        self.agents[log_path] = subprocess.Popen(
            [str(FLEETGATE), "agent", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=agent_env(),
        )
        self.record()

    def check_agent(self, log_path: Path) -> None:
        agent = self.agents.get(log_path)
        if agent is not None and agent.poll() is not None:
            lines = log_path.read_text(errors="replace").strip().splitlines()
            tail = lines[-1] if lines else "no output"
            raise DemoError(f"the agent exited with code {agent.returncode}: {tail}")

    def stop(self) -> None:
        running = {log: a for log, a in self.agents.items() if a.poll() is None}
        for agent in running.values():
            agent.send_signal(signal.SIGTERM)
        for log, agent in running.items():
            try:
                self.agent_exits[log] = agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
                self.agent_exits[log] = agent.wait(timeout=10)
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait(timeout=10)
        for log in self.logs:
            log.close()
        self.logs.clear()
        with contextlib.suppress(OSError):
            self.s.run_file.unlink()


# ------------------------------------------------------------------ Docker objects


def docker(*args: str, check: bool = True) -> str:
    return run(["docker", *args], check=check, timeout=120).stdout.strip()


def labels(device: str) -> list[str]:
    """``--filter`` arguments that select only the demo device's fleetgate objects."""
    return [
        "--filter",
        "label=io.fleetgate.managed=true",
        "--filter",
        f"label=io.fleetgate.device={device}",
    ]


def demo_containers(device: str) -> list[str]:
    out = docker("ps", "--all", "--format", "{{.Names}}", *labels(device))
    return sorted(out.split())


def remove_docker_objects(device: str, purge: bool) -> list[str]:
    """Stop and remove the device's containers and networks (and, purging, volumes)."""
    removed: list[str] = []
    names = demo_containers(device)
    if names:
        docker("stop", "--time", "10", *names)
        docker("rm", *names)
        removed += [f"container {n}" for n in names]
    networks = docker("network", "ls", "--format", "{{.Name}}", *labels(device)).split()
    for name in sorted(networks):
        docker("network", "rm", name)
        removed.append(f"network {name}")
    if purge:
        volumes = docker("volume", "ls", "--format", "{{.Name}}", *labels(device)).split()
        for name in sorted(volumes):
            docker("volume", "rm", name)
            removed.append(f"volume {name}")
    return removed


def engine_answers() -> bool:
    return (
        shutil.which("docker") is not None and run(["docker", "info"], check=False).returncode == 0
    )


def clean_up(s: Settings, purge: bool) -> list[str]:
    """Remove what the demo made; return one line per thing removed or kept."""
    lines: list[str] = []
    stop_leftovers(s)
    lines += FleetView(s.dir).stop()
    if engine_answers():
        for device in (s.device, *s.wave_devices):
            lines += [f"removed {x}" for x in remove_docker_objects(device, purge)]
        if purge:
            for image in IMAGES:
                if run(["docker", "image", "inspect", image], check=False).returncode != 0:
                    continue
                if run(["docker", "rmi", image], check=False).returncode == 0:
                    lines.append(f"removed image {image}")
                else:
                    lines.append(f"kept image {image} (a container still uses it)")
    else:
        lines.append("the Docker engine does not answer: no containers removed")
    if s.state.exists():
        for child in sorted(s.state.iterdir()):
            if child.name != "data" or purge:
                remove_path(child)
        if purge:
            s.state.rmdir()
            lines.append(f"removed {s.shown(s.state)} (with the data)")
        else:
            lines.append(f"removed {s.shown(s.state)} (except its data)")
    for path in (
        s.served,
        s.waves,
        s.run_file,
        s.dir / "agent.yaml",
        s.dir / "agent.log",
        s.dir / "git-daemon.log",
        *sorted(s.dir.glob("build-fleetgate-demo-*.log")),
    ):
        if path.exists():
            remove_path(path)
            lines.append(f"removed {s.shown(path)}")
    if not purge and (s.state / "data").exists():
        data = s.shown(s.state / "data")
        lines.append(f"kept {data}: the sensor's readings (--clean --purge removes them)")
    return lines
