"""The agent as a real process, and the small fleet the end-to-end tests serve it.

- :class:`Fleet`: a Git repository (``support.gitserver.Origin``) in the served folder
  with one device and one stack ``app`` (service ``web``: busybox ``sleep``, ``init``,
  a one-second stop grace, health = running without restarts).
- :class:`AgentProcess`: ``python -m reconciler agent --config FILE`` with a temporary
  state directory; reads ``status.json``; stops with SIGTERM; always killed in the
  finalizer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
import yaml
from support.gitserver import GIT_ENV, Origin
from support.wait import wait_for

PYTHON = Path(sys.executable)

COMPOSE = """\
services:
  web:
    image: {image}
    command: ["sleep", "3600"]
    init: true
    stop_grace_period: 1s
    labels:
      io.fleetgate.test-run: "{run}"
    environment:
      GREETING: ${{GREETING}}
"""


class Fleet:
    """One device, one stack; ``commit(greeting=...)`` makes a new revision that recreates."""

    def __init__(self, path: Path, device: str, image: str, run_id: str) -> None:
        self.origin = Origin(path)
        self.device = device
        self.image = image
        self.run_id = run_id
        self.windows: list[dict[str, Any]] | None = None
        self.head = self.commit(greeting="one", message="initial fleet")

    @property
    def name(self) -> str:
        return self.origin.name

    def commit(self, *, greeting: str, message: str = "change") -> str:
        device: dict[str, Any] = {"stacks": ["app"]}
        if self.windows is not None:
            device["updateWindows"] = self.windows
        self.head = self.origin.commit(
            {
                "fleet.yaml": yaml.safe_dump({"variables": {"GREETING": greeting}}),
                f"devices/{self.device}.yaml": yaml.safe_dump(device),
                "stacks/app/compose.yaml": COMPOSE.format(image=self.image, run=self.run_id),
                "stacks/app/stack.yaml": "healthTimeout: 10s\n",
            },
            message,
        )
        return self.head


class AgentProcess:
    """One ``fleetgate agent`` subprocess with its own state directory."""

    def __init__(self, tmp: Path, config: Mapping[str, Any], state: Path | None = None) -> None:
        self.tmp = tmp
        self.state = state or tmp / "state"
        self.device = str(config["device"])
        self.config_path = tmp / "agent.yaml"
        self.config_path.write_text(
            yaml.safe_dump({"stateDir": str(self.state), "statusListen": "127.0.0.1:0", **config})
        )
        self.log_path = tmp / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGATE_")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(PYTHON), "-m", "reconciler", "agent", "--config", str(self.config_path)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
            )
        return self

    @property
    def status_path(self) -> Path:
        return self.state / "devices" / self.device / "status.json"

    def status(self) -> dict[str, Any]:
        """The published status (``{}`` before the first one)."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            data: dict[str, Any] = json.loads(self.status_path.read_text())
            return data
        return {}

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log events called ``name``."""
        out = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == name:
                    out.append(event)
        return out

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait up to ``timeout`` seconds; the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=10)


def managed(client: docker.DockerClient, device: str) -> dict[str, tuple[str, str, str]]:
    """name -> (id, status, GREETING) of the device's managed containers."""
    found = client.containers.list(
        all=True, filters={"label": ["io.fleetgate.managed=true", f"io.fleetgate.device={device}"]}
    )
    out = {}
    for c in found:
        env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"] or () if "=" in e)
        out[c.name] = (c.id, c.status, env.get("GREETING", ""))
    return out


def git_daemon_on(base: Path, port: int) -> subprocess.Popen[bytes]:
    """``git daemon`` serving ``base`` on a given port (to bring a stopped server back)."""
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **GIT_ENV},
    )

    def answers() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        assert proc.poll() is None, "git daemon exited"
        return False

    wait_for(answers, timeout=15, what=f"git daemon back on :{port}")
    return proc
