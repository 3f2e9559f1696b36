"""Hostile corpus, status port and agent trust: `fleetgate agent` on a bad or risky config.

A mistake in ``statusListen`` / ``statusTokenFile`` is exit 2 with ``file:line`` before
anything starts; an unsigned, unrestricted device and a status port beyond loopback are
said loudly on stderr. Each case failed on the code before this branch unless its
docstring line says it guards a regression.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.hostile import Case, run_case

TOKEN = "hostile-token-0123456789"
AGENT = ("agent", "--config", "{repo}/agent.yaml", "--once")
QUIET = "stateDir: state\ndockerHost: tcp://127.0.0.1:1\n"
"""The agent's state under the case folder and an engine that refuses at once."""


def agent_case(name: str, config: str, expect: tuple[str, ...], **files: str) -> Case:
    return Case(
        name=name,
        files={"agent.yaml": config, **files},
        expect=expect,
        args=AGENT,
        exit_code=2,
    )


CASES = [
    # statusListen naming a DNS name: the Host rules need the bound address (old: accepted).
    agent_case(
        "listen-dns-name",
        "repo: /nowhere\n" + QUIET + "statusListen: 'status.example.com:9180'\n",
        ("agent.yaml:4:", "statusListen", "is not IP:PORT"),
    ),
    # Port above 65535 (old: accepted, failed later at bind without file:line).
    agent_case(
        "listen-port-too-big",
        "repo: /nowhere\n" + QUIET + "statusListen: '127.0.0.1:99999'\n",
        ("agent.yaml:4:", "port 99999 is above 65535"),
    ),
    # Regression guard: garbage was already refused by the schema; it must stay so.
    agent_case(
        "listen-garbage",
        "repo: /nowhere\n" + QUIET + "statusListen: 'garbage\\u001b[31m'\n",
        ("agent.yaml:4:", "statusListen"),
    ),
    # Token file missing (old: unknown key statusTokenFile).
    agent_case(
        "token-file-missing",
        "repo: /nowhere\n" + QUIET + "statusTokenFile: repo/missing.token\n",
        ("agent.yaml:4:", "statusTokenFile repo/missing.token: no such file", "chmod 600"),
    ),
    # Token file readable by everyone (written with the default umask, 0644).
    agent_case(
        "token-file-world-readable",
        "repo: /nowhere\n" + QUIET + "statusTokenFile: repo/status.token\n",
        ("agent.yaml:4:", "readable by other users", "chmod 600 repo/status.token"),
        **{"status.token": TOKEN + "\n"},
    ),
    # A folder is not a token (old: unknown key).
    agent_case(
        "token-file-is-a-folder",
        "repo: /nowhere\n" + QUIET + "statusTokenFile: repo\n",
        ("agent.yaml:4:", "statusTokenFile repo is not a file"),
    ),
    # No allowedSigners, no policy: said on stderr, repository credentials redacted
    # (old: silent).
    Case(
        name="unsigned-and-unrestricted-warned",
        files={"agent.yaml": "repo: https://bot:hunter2pw@127.0.0.1:1/fleet.git\n" + QUIET},
        expect=(
            "fleetgate: warning: unsigned-and-unrestricted",
            "whoever can push to https://",
            "may run what the fleet policy allows",
        ),
        args=AGENT,
        exit_code=1,
    ),
]


class TestStatusPortCorpus:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """A risky agent config is refused (exit 2, file:line) or warned about, quickly."""
        outcome = run_case(case, tmp_path)
        assert TOKEN not in outcome.output
        assert "hunter2pw" not in outcome.output


class TestExposedPort:
    """`fleetgate agent` with statusListen 0.0.0.0 says so on stderr as it starts."""

    def test_warning_line_on_stderr(self, tmp_path: Path) -> None:
        """A status port on every interface prints one status-port-exposed warning line."""
        config = tmp_path / "agent.yaml"
        config.write_text(
            "repo: /nowhere\nstateDir: state\ndockerHost: tcp://127.0.0.1:1\n"
            "statusListen: '0.0.0.0:0'\nallowedSigners: signers\n"
        )
        err = tmp_path / "stderr"
        with err.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "reconciler", "agent", "--config", str(config)],
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                env={k: v for k, v in os.environ.items() if not k.startswith("FLEETGATE_")},
            )
        try:
            deadline = time.monotonic() + 30
            while "status.listening" not in err.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, err.read_text()
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        text = err.read_text()
        lines = [line for line in text.splitlines() if line.startswith("fleetgate: warning:")]
        assert lines == [
            "fleetgate: warning: status-port-exposed: statusListen 0.0.0.0:0 is reachable from "
            "other machines: whoever reaches it can read /status and /metrics and POST "
            "/reconcile (set statusTokenFile to require a token)"
        ]
        assert '"event": "status.exposed"' in text
        assert "unsigned-and-unrestricted" not in text  # allowedSigners is set
        assert "Traceback" not in text
