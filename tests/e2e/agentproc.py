"""The agent as a real process, and the small fleet the end-to-end tests serve it.

- :class:`Fleet`: a Git repository (``support.gitserver.Origin``) in the served folder
  with one device and one stack ``app`` (service ``web``: busybox ``sleep``, ``init``,
  a one-second stop grace, health = running without restarts); commits may be signed
  with an SSH key, carry a crashing command or extra (e.g. deliberately invalid) files.
- :class:`AgentProcess`: ``python -m reconciler agent --config FILE`` with a temporary
  state directory and optional extra environment (``FLEETGATE_CRASH_AT``); reads
  ``status.json``; stops with SIGTERM; always killed in the finalizer.
- :func:`keygen` / :func:`allowed_signers`: SSH signing keys for signed commits and
  bundles.
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
from support.gitserver import GIT_ENV, Origin, git
from support.wait import wait_for

PYTHON = Path(sys.executable)

COMPOSE = """\
services:
  web:
    image: {image}
    command: {command}
    init: true
    stop_grace_period: 1s
    labels:
      io.fleetgate.test-run: "{run}"
    environment:
      GREETING: ${{GREETING}}
{volumes}"""
CONFIG_MOUNT = """\
    volumes:
      - ./app.conf:/etc/app.conf:ro
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

    def commit(
        self,
        *,
        greeting: str,
        message: str = "change",
        command: str = '["sleep", "3600"]',
        sign_with: Path | None = None,
        extra: Mapping[str, str] | None = None,
        config: str | None = None,
    ) -> str:
        """Commit the fleet with ``greeting`` (and ``command`` for ``web``); the new head.

        ``sign_with``: an SSH private key that signs the commit. ``extra``: more files
        (relative path -> text) in the same commit. ``config``: the text of a config
        file ``app.conf`` mounted read-only into ``web``.
        """
        device: dict[str, Any] = {"stacks": ["app"]}
        if self.windows is not None:
            device["updateWindows"] = self.windows
        volumes = "" if config is None else CONFIG_MOUNT
        compose = COMPOSE.format(
            image=self.image, run=self.run_id, command=command, volumes=volumes
        )
        files = {
            "fleet.yaml": yaml.safe_dump({"variables": {"GREETING": greeting}}),
            f"devices/{self.device}.yaml": yaml.safe_dump(device),
            "stacks/app/compose.yaml": compose,
            "stacks/app/stack.yaml": "healthTimeout: 10s\n",
            **({} if config is None else {"stacks/app/app.conf": config}),
            **(extra or {}),
        }
        if sign_with is None:
            self.head = self.origin.commit(files, message)
            return self.head
        for rel, text in files.items():
            (self.origin.path / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.origin.path / rel).write_text(text, encoding="utf-8")
        git("add", "--all", cwd=self.origin.path)
        sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={sign_with}"]
        git(*sign, "commit", "--quiet", "--allow-empty", "-S", "-m", message,
            cwd=self.origin.path)  # fmt: skip
        self.head = git("rev-parse", "HEAD", cwd=self.origin.path)
        return self.head

    def rewind(self, revision: str) -> None:
        """Force the served branch back to ``revision`` (what a force-push does)."""
        git("update-ref", "refs/heads/main", revision, cwd=self.origin.path)
        git("read-tree", "--reset", "-u", "HEAD", cwd=self.origin.path)
        self.head = revision


def keygen(path: Path) -> Path:
    """A fresh ed25519 key pair without passphrase; the private key path."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        timeout=30,
    )
    return path


def allowed_signers(path: Path, *keys: Path) -> Path:
    """An OpenSSH allowed signers file allowing ``keys`` for the test committer."""
    lines = [f"{GIT_ENV['GIT_COMMITTER_EMAIL']} {k.with_suffix('.pub').read_text().strip()}"
             for k in keys]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


class AgentProcess:
    """One ``fleetgate agent`` subprocess with its own state directory."""

    def __init__(
        self,
        tmp: Path,
        config: Mapping[str, Any],
        state: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.tmp = tmp
        self.extra_env = dict(env or {})
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
        env.update(self.extra_env)
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


def labelled(client: docker.DockerClient, device: str) -> list[docker.models.containers.Container]:
    """Every container (running or not) carrying the device's fleetgate labels."""
    return list(
        client.containers.list(
            all=True,
            filters={"label": ["io.fleetgate.managed=true", f"io.fleetgate.device={device}"]},
        )
    )


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
