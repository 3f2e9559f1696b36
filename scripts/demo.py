"""The steps of ``scripts/demo`` (which installs what is needed and builds the images first).

``demo.py run``: publish example-fleet-repo/ as a Git repository served by ``git
daemon`` on 127.0.0.1, run ``fleetgate agent`` against it and show, waiting on the
agent's status each time (never a blind sleep):

1. the first rollout converging and healthy, ``fleetgate status``, the dashboard;
2. an update by commit (the sensor image ``:1`` → ``:2``) converging;
3. a bad release (a typo in ``sensor.conf``) that the agent rolls back by itself;
4. ``fleetgate rollback`` of the bad commit (a ``git revert``) converging;

then a summary with timings. The agent (SIGTERM) and the Git server stop at the end;
the demo's containers keep running for a look. ``demo.py clean [--purge]`` removes
what the demo made (see ``scripts/demo --help``).

Only the standard library is used, and Docker only through the ``docker`` CLI with
filters on the demo device's ``io.fleetgate.*`` labels: nothing else on the engine
is ever touched. Every failure is one ``error: ...`` line and exit code 1.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from demo_fleet import FleetView

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example-fleet-repo"
FLEETGATE = Path(sys.executable).parent / "fleetgate"
IMAGES = ("fleetgate-demo/sensor:1", "fleetgate-demo/sensor:2", "fleetgate-demo/dashboard:1")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Fleet Engineer",
    "GIT_AUTHOR_EMAIL": "engineer@plant.example",
    "GIT_COMMITTER_NAME": "Fleet Engineer",
    "GIT_COMMITTER_EMAIL": "engineer@plant.example",
    "GIT_CONFIG_NOSYSTEM": "1",  # the user's git settings (signing, hooks) stay out of it
    "GIT_CONFIG_GLOBAL": "/dev/null",
}
POLL = 0.25
T = TypeVar("T")


class DemoError(Exception):
    """A step failed: the message is the one line the user sees."""


@dataclass(frozen=True)
class Settings:
    """Where the demo works; every value can be moved by a FLEETGATE_DEMO_* variable."""

    dir: Path
    device: str
    port: int
    timeout: float

    @staticmethod
    def from_env(env: Mapping[str, str]) -> Settings:
        device = env.get("FLEETGATE_DEMO_DEVICE", "demo")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", device):
            raise DemoError(f"FLEETGATE_DEMO_DEVICE={device!r} is not a device id ([a-z0-9-])")
        try:
            port = int(env.get("FLEETGATE_DEMO_PORT", "18080"))
            timeout = float(env.get("FLEETGATE_DEMO_TIMEOUT", "120"))
        except ValueError as e:
            raise DemoError(f"FLEETGATE_DEMO_PORT / FLEETGATE_DEMO_TIMEOUT: {e}") from None
        folder = Path(env.get("FLEETGATE_DEMO_DIR") or ROOT / ".demo").resolve()
        return Settings(folder, device, port, timeout)

    @property
    def state(self) -> Path:
        return self.dir / "state"

    @property
    def served(self) -> Path:
        return self.dir / "git"

    @property
    def repo(self) -> Path:
        return self.served / "fleet"

    @property
    def run_file(self) -> Path:
        return self.dir / "run.json"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def shown(self, path: Path) -> str:
        """A path as the user would type it (relative to the checkout when inside it)."""
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)


# ------------------------------------------------------------------ small tools


def say(line: str) -> None:
    print(f"==> {line}", flush=True)


def show(text: str, indent: str = "    ") -> None:
    for line in text.rstrip("\n").splitlines():
        print(f"{indent}{line}", flush=True)


def run(
    argv: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise :class:`DemoError` with its last error line."""
    try:
        done = subprocess.run(
            [str(a) for a in argv],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise DemoError(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise DemoError(
            f"{Path(str(argv[0])).name} {argv[1]} took longer than {timeout:g}s"
        ) from None
    if check and done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise DemoError(f"{Path(str(argv[0])).name} {argv[1]} failed: {last}")
    return done


def git(repo: Path, *args: str) -> str:
    return run(["git", *args], cwd=repo, env=GIT_ENV).stdout.strip()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """The first non-None value of ``predicate()``; :class:`DemoError` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise DemoError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL)


def short(revision: str | None) -> str:
    return (revision or "none")[:7]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


# ------------------------------------------------------------ the demo's processes


def started(proc: subprocess.Popen[bytes], port: int) -> Callable[[], bool | None]:
    """True once ``port`` answers, False when ``proc`` exited, else None (wait on)."""

    def check() -> bool | None:
        if answers(port):
            return True
        return False if proc.poll() is not None else None

    return check


def pid_alive(pid: int, marker: str) -> bool:
    """``pid`` runs and its command line contains ``marker`` (so never a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def stop_pid(pid: int, marker: str, grace: float = 30.0) -> None:
    """SIGTERM a process the demo started (checked by ``marker``); SIGKILL after ``grace``."""
    if not pid_alive(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop_leftovers(s: Settings) -> None:
    """Stop an agent / git daemon that an interrupted earlier run left behind."""
    try:
        record = json.loads(s.run_file.read_text())
    except (OSError, ValueError):
        return
    for name in ("agent_pid", "daemon_pid"):
        pid = record.get(name)
        if isinstance(pid, int):
            stop_pid(pid, str(s.dir))


def agent_env() -> dict[str, str]:
    """The environment without FLEETGATE_* agent settings: the demo's config file decides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGATE_")}
    env.update(GIT_ENV)
    return env


@dataclass
class Processes:
    """The git daemon and the agent of one run; :meth:`stop` ends both (SIGTERM first)."""

    s: Settings
    daemon: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None
    agent_exit: int | None = None
    logs: list[Any] = field(default_factory=list)

    def record(self) -> None:
        self.s.run_file.write_text(
            json.dumps(
                {
                    "device": self.s.device,
                    "port": self.s.port,
                    "agent_pid": self.agent.pid if self.agent else None,
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

    def start_agent(self, config: Path) -> None:
        log = (self.s.dir / "agent.log").open("wb")
        self.logs.append(log)
        self.agent = subprocess.Popen(
            [str(FLEETGATE), "agent", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=agent_env(),
        )
        self.record()

    def check_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is not None:
            tail = self.agent_log_tail()
            raise DemoError(f"the agent exited with code {self.agent.returncode}: {tail}")

    def agent_log_tail(self) -> str:
        lines = (self.s.dir / "agent.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def stop(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent_exit = self.agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent_exit = self.agent.wait(timeout=10)
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


# ---------------------------------------------------------------------- the fleet


def publish_fleet(s: Settings) -> str:
    """Copy example-fleet-repo/ into a fresh Git repository; return the first commit."""
    shutil.rmtree(s.served, ignore_errors=True)
    s.served.mkdir(parents=True)
    shutil.copytree(EXAMPLE, s.repo)
    device_file = s.repo / "devices" / "demo.yaml"
    text = device_file.read_text()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())
    if arch is None:
        raise DemoError(f"the demo images run on amd64 and arm64, not {platform.machine()}")
    text = edit(text, "arch: amd64", f"arch: {arch}", device_file)
    if s.port != 18080:
        text = edit(text, "variables:\n", f'variables:\n  DEMO_PORT: "{s.port}"\n', device_file)
    device_file.unlink()
    (s.repo / "devices" / f"{s.device}.yaml").write_text(text)
    git(s.repo, "init", "--quiet", "--initial-branch=main")
    git(s.repo, "add", "--all")
    git(
        s.repo,
        "commit",
        "--quiet",
        "-m",
        "Example fleet: the demo device runs a sensor and a dashboard",
    )
    return git(s.repo, "rev-parse", "HEAD")


def edit(text: str, old: str, new: str, path: Path) -> str:
    if old not in text:
        raise DemoError(f"{path}: expected {old.strip()!r} (the example fleet changed?)")
    return text.replace(old, new, 1)


def commit_change(s: Settings, rel: str, old: str, new: str, message: str) -> str:
    path = s.repo / rel
    path.write_text(edit(path.read_text(), old, new, path))
    git(s.repo, "commit", "--quiet", "--all", "-m", message)
    return git(s.repo, "rev-parse", "HEAD")


def write_agent_config(s: Settings, git_port: int, status_port: int, broker: str) -> Path:
    config = s.dir / "agent.yaml"
    config.write_text(
        "# The demo agent's configuration (written by scripts/demo; see docs/agent.md).\n"
        f"device: {s.device}\n"
        f"repo: git://127.0.0.1:{git_port}/fleet\n"
        "ref: main\n"
        "pollInterval: 2s\n"
        f"stateDir: {s.state}\n"
        f"statusListen: 127.0.0.1:{status_port}\n"
        "healthTimeout: 1m\n"
        f"report: {broker}\n"
        "reportInterval: 30s\n"
    )
    return config


# ------------------------------------------------------------------ waiting on status


@dataclass
class Agent:
    """Reads the running agent's ``/status``."""

    procs: Processes
    status_port: int

    def status(self) -> dict[str, Any] | None:
        self.procs.check_agent()
        try:
            code, body = http_get(f"http://127.0.0.1:{self.status_port}/status")
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


# ------------------------------------------------------------------------ commands


@dataclass
class Summary:
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, step: str, revision: str, what: str) -> None:
        self.rows.append((step, short(revision), what))

    def print(self, total: float) -> None:
        say(f"summary (the whole demo took {total:.0f}s)")
        width = max(len(r[0]) for r in self.rows)
        for step, rev, what in self.rows:
            print(f"    {step:<{width}}  {rev}  {what}", flush=True)


def run_demo(s: Settings) -> int:
    started = time.monotonic()
    s.dir.mkdir(parents=True, exist_ok=True)
    stop_leftovers(s)
    FleetView(s.dir).stop()  # the broker and page of an earlier run
    if demo_containers(s.device) or (
        s.state.exists() and any(p.name != "data" for p in s.state.iterdir())
    ):
        say(f"removing the previous demo run of device {s.device} (its data is kept)")
        for line in clean_up(s, purge=False):
            show(line)
    if answers(s.port):
        raise DemoError(
            f"127.0.0.1:{s.port} is in use by another program; "
            f"run with FLEETGATE_DEMO_PORT=<free port>"
        )

    say("fleetgate validate --repo example-fleet-repo")
    run([FLEETGATE, "validate", "--repo", EXAMPLE])
    show("0 findings: every manifest of the example fleet is valid")

    say(f"publishing example-fleet-repo/ as a Git repository in {s.shown(s.repo)}")
    first = publish_fleet(s)
    show(f"branch main at {short(first)}: {git(s.repo, 'log', '-1', '--format=%s')}")

    procs = Processes(s)
    summary = Summary()
    fleet = FleetView(s.dir)
    try:
        try:
            broker = fleet.start_broker()
        except RuntimeError as e:
            raise DemoError(str(e)) from None
        say(f"mosquitto on {broker}: the agent reports its status there (fleet view)")
        git_port = procs.start_daemon()
        say(f"git daemon serves it as git://127.0.0.1:{git_port}/fleet (the agent pulls)")

        status_port = free_port()
        config = write_agent_config(s, git_port, status_port, broker)
        say(f"fleetgate agent --config {s.shown(config)}   (log: {s.shown(s.dir / 'agent.log')})")
        show(config.read_text())
        agent_started = time.monotonic()
        procs.start_agent(config)
        agent = Agent(procs, status_port)

        say(f"waiting for the first revision {short(first)} to converge and turn healthy")
        wait_for(converged(agent, first), s.timeout, f"revision {short(first)} to converge")
        took = time.monotonic() - agent_started
        show(f"converged and healthy {took:.1f}s after the agent started")
        summary.add("first rollout", first, f"converged and healthy in {took:.1f}s")
        show_status(s)
        show_dashboard(s)

        say("update by commit: the sensor image fleetgate-demo/sensor:1 -> :2 (as CI would)")
        t0 = time.monotonic()
        update = commit_change(
            s,
            "stacks/demo/compose.yaml",
            "image: fleetgate-demo/sensor:1",
            "image: fleetgate-demo/sensor:2",
            "demo: sensor software 2",
        )
        show(f"commit {short(update)} 'demo: sensor software 2' on main")
        say(f"waiting for {short(update)} to converge")
        wait_for(converged(agent, update), s.timeout, f"revision {short(update)} to converge")
        took = time.monotonic() - t0
        show(f"converged and healthy {took:.1f}s after the commit (poll interval 2s)")
        summary.add("update", update, f"sensor :1 -> :2, converged in {took:.1f}s after the commit")
        show_status(s)
        latest = show_dashboard(s)
        if '"version":"2"' not in latest:
            raise DemoError(f"the dashboard does not show sensor software 2: {latest}")

        before = rollbacks(agent.status() or {})
        say("bad release: a typo in stacks/demo/sensor.conf (BASE=21,5 — a decimal comma)")
        t0 = time.monotonic()
        bad = commit_change(
            s,
            "stacks/demo/sensor.conf",
            "BASE=21\n",
            "BASE=21,5\n",
            "demo: sensor base temperature 21,5",
        )
        show(f"commit {short(bad)} 'demo: sensor base temperature 21,5' on main")
        say(f"waiting for the agent to try {short(bad)}, fail its health gate and roll back")
        st = wait_for(
            rolled_back(agent, bad, update, before), s.timeout, f"the rollback of {short(bad)}"
        )
        took = time.monotonic() - t0
        reason = failed_reason(st, bad) or ""
        show(f"rolled back to {short(update)} {took:.1f}s after the commit: {reason}")
        show(f"the agent will not try {short(bad)} again until the repository changes")
        summary.add("bad release", bad, f"rolled back by the agent in {took:.1f}s ({reason})")
        show_rollback_log(s, bad)
        show_status(s)

        say(f"fleetgate rollback {short(bad)} --repo {s.shown(s.repo)}   (a git revert commit)")
        t0 = time.monotonic()
        out = run([FLEETGATE, "rollback", "--repo", s.repo, bad], env=GIT_ENV)
        revert = git(s.repo, "rev-parse", "HEAD")
        show((out.stderr.strip() or out.stdout.strip()).splitlines()[-1])
        show(f"commit {short(revert)} '{git(s.repo, 'log', '-1', '--format=%s')}' on main")
        say(f"waiting for {short(revert)} to converge")
        wait_for(converged(agent, revert), s.timeout, f"revision {short(revert)} to converge")
        took = time.monotonic() - t0
        show(f"converged and healthy {took:.1f}s after fleetgate rollback")
        summary.add("fleetgate rollback", revert, f"reverts {short(bad)}, converged in {took:.1f}s")
        show_status(s)
        say(f"fleetgate history --device {s.device} --repo {s.shown(s.repo)}   (the audit trail)")
        show(run([FLEETGATE, "history", "--device", s.device, "--repo", s.repo]).stdout)
        page = show_fleet(s, fleet, revert)
    except BaseException:
        with contextlib.suppress(OSError):
            fleet.stop()
        raise
    finally:
        say(
            "stopping the agent (SIGTERM) and the git daemon; the demo containers, mosquitto "
            "and the fleet page keep running"
        )
        procs.stop()
    if procs.agent_exit not in (0, None):
        raise DemoError(f"the agent exited with code {procs.agent_exit} on SIGTERM (see its log)")

    summary.print(time.monotonic() - started)
    look = [
        (s.dashboard, "the dashboard (sensor software 2)"),
        (page, "the fleet page (fleetgate fleet serve)"),
        (
            f".venv/bin/fleetgate fleet status --broker {fleet.broker_url} "
            f"--repo {s.shown(s.repo)}",
            "",
        ),
        (f"docker ps --filter label=io.fleetgate.device={s.device}", "the demo's containers"),
        (f".venv/bin/fleetgate status --device {s.device} --state-dir {s.shown(s.state)}", ""),
        (f".venv/bin/fleetgate history --device {s.device} --repo {s.shown(s.repo)}", ""),
        (s.shown(s.dir / "agent.log"), "the agent's log (JSON lines)"),
    ]
    print("\nLook around (the containers keep running; no agent watches them now):")
    for command, what in look:
        print(f"    {command:<62} {what}".rstrip())
    print("Clean up:")
    data = s.shown(s.state / "data")
    print("    scripts/demo --clean            containers, network, mosquitto, fleet page,")
    print("                                    state and logs;")
    print(f"                                    keeps the sensor's data in {data}")
    print("    scripts/demo --clean --purge    also the data, named volumes and demo images")
    return 0


def show_fleet(s: Settings, fleet: FleetView, revision: str) -> str:
    """``fleetgate fleet status`` once the agent's report of ``revision`` is on the
    broker, then the ``fleet serve`` page (left running); its address."""
    command: list[str | Path] = [
        FLEETGATE,
        "fleet",
        "status",
        "--broker",
        fleet.broker_url,
        "--repo",
        s.repo,
    ]
    say(f"fleetgate fleet status --broker {fleet.broker_url} --repo {s.shown(s.repo)}")

    def reported() -> str | None:
        out = run([*command, "--output", "json"], check=False)
        if out.returncode != 0:
            return None
        rows = {r["device"]: r for r in json.loads(out.stdout)["devices"]}
        status = (rows.get(s.device) or {}).get("status") or {}
        return out.stdout if status.get("applied_revision") == revision else None

    wait_for(reported, s.timeout, f"the agent's report of {short(revision)} on the broker")
    show(run(command).stdout)
    try:
        page = fleet.start_page(FLEETGATE, s.repo, agent_env())
    except RuntimeError as e:
        raise DemoError(str(e)) from None
    say(f"fleetgate fleet serve: the fleet page is {page} (it keeps running)")
    return page


def clean_up(s: Settings, purge: bool) -> list[str]:
    """Remove what the demo made; return one line per thing removed or kept."""
    lines: list[str] = []
    stop_leftovers(s)
    lines += FleetView(s.dir).stop()
    if engine_answers():
        lines += [f"removed {x}" for x in remove_docker_objects(s.device, purge)]
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


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def main(argv: Sequence[str]) -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # lines show up as they happen
    try:
        s = Settings.from_env(os.environ)
        if argv[:1] == ["run"] and len(argv) == 1:
            return run_demo(s)
        if argv[:1] == ["clean"] and set(argv[1:]) <= {"--purge"}:
            purge = "--purge" in argv
            say(
                f"removing the demo of device {s.device}"
                + (" with its data and images" if purge else "")
            )
            lines = clean_up(s, purge)
            show("\n".join(lines) if lines else "nothing to remove")
            return 0
        print("usage: demo.py run | clean [--purge]", file=sys.stderr)
        return 2
    except DemoError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
