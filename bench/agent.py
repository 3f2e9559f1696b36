"""Benchmark the agent: idle-pass cost, idle RSS, push → converged latency, vs a naive loop.

Set-up: a fleet of two stacks (``app``, ``mqtt``; one busybox service each) for one
device in a Git repository served by ``git daemon`` on 127.0.0.1, a ``FROM scratch``
busybox image built locally. Everything created is labelled / named with a per-run id
and removed at the end.

Measured, printed in one run:

1. **idle passes**: a child process builds the agent exactly as ``fleetgate agent``
   does (Docker engine, event stream, status HTTP server, status file), converges once,
   then runs ``--passes`` (default 1,000) timer passes back to back. It reports CPU time
   per idle pass (user + system of itself and its git children) and ``VmRSS`` /
   ``VmHWM`` from ``/proc/self/status`` after them.
2. **baseline**: the naive loop, ``git fetch`` + ``git reset --hard`` in a clone and
   ``docker compose up -d`` (``.venv/bin/docker-compose``) for each stack, on the same
   stacks: CPU and wall time per iteration (the engine's own CPU is not counted on
   either side).
3. **push → converged** at a 2 s poll interval: ``fleetgate agent`` as a subprocess;
   a commit changes a variable; the time until the new container runs and until the
   status says ``succeeded`` at the new revision (that includes the health gate's
   settle time), over ``--pushes`` pushes; and the same for the baseline loop at 2 s.

    .venv/bin/python bench/agent.py [--passes 1000] [--baseline 10] [--pushes 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import yaml

from reconciler.agent.config import load_config
from reconciler.agent.loop import Agent, FileStatus
from reconciler.agent.triggers import EngineEventWatch, Wakeup
from reconciler.engine.docker import DockerEngine
from reconciler.report.http import StatusServer
from reconciler.report.logs import configure_logging
from reconciler.store import StateStore

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
COMPOSE_BIN = ROOT / ".venv" / "bin" / "docker-compose"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@plant.example",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@plant.example",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}
RUN = secrets.token_hex(3)
LABEL = "io.fleetgate.test-run"
STACKS = ("app", "mqtt")
SERVICE = """\
services:
  {service}:
    image: {image}
    command: ["sleep", "3600"]
    init: true
    stop_grace_period: 1s
    labels:
      {label}: "{run}"
    environment:
      GREETING: ${{GREETING}}
"""


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **GIT_ENV}
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def vm_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# --------------------------------------------------------------------- fixtures


def build_image(client: docker.DockerClient) -> str:
    tag = f"fleetgate-bench/busybox:{RUN}"
    buf = io.BytesIO()
    dockerfile = (
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", '
        '"/bin"]\nCMD ["sh"]\n'
    )
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (
            ("Dockerfile", dockerfile.encode()),
            ("busybox", Path("/bin/busybox").read_bytes()),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag=tag, labels={LABEL: RUN}, rm=True)
    return tag


class Fleet:
    def __init__(self, served: Path, device: str, image: str) -> None:
        self.path = served / "fleet"
        self.path.mkdir(parents=True)
        self.device = device
        git("init", "--quiet", "--initial-branch=main", ".", cwd=self.path)
        for stack in STACKS:
            folder = self.path / "stacks" / stack
            folder.mkdir(parents=True)
            service = "web" if stack == "app" else "broker"
            (folder / "compose.yaml").write_text(
                SERVICE.format(service=service, image=image, label=LABEL, run=RUN)
            )
            (folder / "stack.yaml").write_text("healthTimeout: 20s\n")
        (self.path / "devices").mkdir()
        (self.path / "devices" / f"{device}.yaml").write_text(
            yaml.safe_dump({"stacks": list(STACKS)})
        )
        self.greeting = ""
        self.head = self.commit("one")

    def commit(self, greeting: str) -> str:
        self.greeting = greeting
        (self.path / "fleet.yaml").write_text(yaml.safe_dump({"variables": {"GREETING": greeting}}))
        git("add", "--all", cwd=self.path)
        git("commit", "--quiet", "-m", greeting, cwd=self.path)
        self.head = git("rev-parse", "HEAD", cwd=self.path)
        return self.head


@contextlib.contextmanager
def git_daemon(base: Path) -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}",
         "--listen=127.0.0.1", f"--port={port}", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **GIT_ENV},
    )  # fmt: skip

    def answers() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        return False

    try:
        wait_for(answers, 15, "git daemon")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cleanup(client: docker.DockerClient, device: str) -> None:
    for c in client.containers.list(all=True, filters={"label": f"{LABEL}={RUN}"}):
        c.remove(force=True)
    for c in client.containers.list(all=True, filters={"label": f"io.fleetgate.device={device}"}):
        if c.labels.get("io.fleetgate.managed") == "true":
            c.remove(force=True)
    for n in client.networks.list(filters={"label": f"io.fleetgate.device={device}"}):
        n.remove()
    for n in client.networks.list(names=[f"bench-{RUN}-{s}_default" for s in STACKS]):
        if n.name.startswith(f"bench-{RUN}-"):
            n.remove()
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(f"fleetgate-bench/busybox:{RUN}")


# -------------------------------------------------------------------- the child


def child(args: argparse.Namespace) -> None:
    """Run in a fresh interpreter: the agent as `fleetgate agent` builds it, then N idle passes."""
    configure_logging(json=True, level="warning")
    flags = {"device": args.device, "repo": args.repo, "stateDir": args.state}
    config = load_config(None, {}, {**flags, "statusListen": "127.0.0.1:0"})
    wakeup = Wakeup()
    watcher = EngineEventWatch(DockerEngine(), config.device, wakeup)
    agent = Agent(
        config,
        runtime=DockerEngine(),
        store=StateStore(config.state_dir, config.device),
        publisher=FileStatus(config.state_dir),
        wakeup=wakeup,
        events_connected=watcher.connected,
    )
    server = StatusServer(config.status_listen, agent.status, agent.nudge)
    server.start()
    watcher.start()
    wait_for(watcher.connected.is_set, 30, "docker events")
    first = agent.run_pass(frozenset({"start"}))
    wakeup.wait(0)
    assert first.outcome == "succeeded", first.reason
    agent.run_pass(frozenset())  # warm
    full_before = agent.status().counters.passes_total
    rss_before = vm_kb("VmRSS")
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    for _ in range(args.passes):
        agent.run_pass(frozenset())
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    full = agent.status().counters.passes_total - full_before
    server.stop()
    watcher.stop()
    if args.modules:  # in import order: bench/footprint.py --breakdown replays it
        Path(args.modules).write_text("\n".join(sys.modules))
    print(json.dumps({
        "passes": args.passes, "full_passes": full, "cpu_per_pass": cpu / args.passes,
        "wall_per_pass": wall / args.passes, "rss_before_kb": rss_before, "rss_kb": vm_kb("VmRSS"),
        "hwm_kb": vm_kb("VmHWM"),
    }))  # fmt: skip


# ---------------------------------------------------------------------- parent


def idle_passes(args: argparse.Namespace, fleet: Fleet, url: str, tmp: Path) -> dict[str, Any]:
    """The idle child's figures; with ``args.image``, the child runs in that image (its
    Python and dependencies, as a device runs them) with this checkout's ``reconciler``
    mounted over the installed one, on the host network (the git daemon is on loopback)."""
    image = getattr(args, "image", None)
    state = tmp / ("state-idle-image" if image else "state-idle")
    modules = getattr(args, "modules", None)
    child = ["--child", "--device", fleet.device, "--repo", url, "--state", str(state),
             "--passes", str(args.passes)]  # fmt: skip
    if modules:
        child += ["--modules", modules]
    command = [str(PYTHON), __file__, *child]
    if image:
        site = "/usr/local/lib/python3.11/dist-packages/reconciler"
        command = [
            "docker", "run", "--rm", "--network", "host", "--label", f"{LABEL}={RUN}",
            "-v", "/var/run/docker.sock:/var/run/docker.sock",
            "-v", f"{ROOT / 'reconciler'}:{site}:ro", "-v", f"{ROOT / 'bench'}:/bench:ro",
            "-v", f"{tmp}:{tmp}", "--entrypoint", "python3", image, "/bench/agent.py", *child,
        ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def baseline_iteration(clone: Path, greeting: str | None = None) -> None:
    git("fetch", "--quiet", "origin", cwd=clone)
    git("reset", "--quiet", "--hard", "origin/main", cwd=clone)
    variables = yaml.safe_load((clone / "fleet.yaml").read_text())["variables"]
    env = {**os.environ, **{k: str(v) for k, v in variables.items()}}
    for stack in STACKS:
        subprocess.run(
            [str(COMPOSE_BIN), "-p", f"bench-{RUN}-{stack}", "-f",
             str(clone / "stacks" / stack / "compose.yaml"), "up", "-d", "--quiet-pull"],
            env=env, check=True, capture_output=True, timeout=300,
        )  # fmt: skip


def baseline(args: argparse.Namespace, url: str, tmp: Path) -> tuple[Path, dict[str, float]]:
    clone = tmp / "baseline-clone"
    git("clone", "--quiet", url, str(clone), cwd=tmp)
    baseline_iteration(clone)  # first up: creates everything
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    for _ in range(args.baseline):
        baseline_iteration(clone)
    n = args.baseline
    return clone, {
        "cpu_per_iter": (cpu_seconds() - cpu0) / n,
        "wall_per_iter": (time.monotonic() - wall0) / n,
    }


def container_env(client: docker.DockerClient, name: str) -> str:
    with contextlib.suppress(docker.errors.NotFound):
        c = client.containers.get(name)
        if c.status == "running":
            env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"] if "=" in e)
            return env.get("GREETING", "")
    return ""


def agent_latency(
    args: argparse.Namespace, client: docker.DockerClient, fleet: Fleet, url: str, tmp: Path
) -> list[tuple[float, float]]:
    state = tmp / "state-latency"
    config = tmp / "agent.yaml"
    settings = {"device": fleet.device, "repo": url, "pollInterval": "2s", "stateDir": str(state)}
    config.write_text(yaml.safe_dump({**settings, "statusListen": "127.0.0.1:0"}))
    status = state / "devices" / fleet.device / "status.json"

    def at(revision: str) -> bool:
        with contextlib.suppress(OSError, ValueError):
            s = json.loads(status.read_text())
            return bool(s["outcome"] == "succeeded" and s["applied_revision"] == revision)
        return False

    log = (tmp / "agent-latency.log").open("wb")
    proc = subprocess.Popen([str(PYTHON), "-m", "reconciler", "agent", "--config", str(config)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    out = []
    try:
        wait_for(lambda: at(fleet.head), 120, "agent convergence")
        for i in range(args.pushes):
            time.sleep(0.5 + 0.37 * i)  # push at different phases of the poll timer
            pushed = time.monotonic()
            head = fleet.commit(f"agent-{i}")
            wait_for(
                lambda: container_env(client, f"{fleet.device}_app_web") == fleet.greeting,
                120,
                "new container",
            )
            running = time.monotonic() - pushed
            wait_for(lambda rev=head: at(rev), 120, "converged status")
            out.append((running, time.monotonic() - pushed))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    return out


def baseline_latency(
    args: argparse.Namespace, client: docker.DockerClient, fleet: Fleet, clone: Path
) -> list[float]:
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            baseline_iteration(clone)
            stop.wait(2.0)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    out = []
    name = f"bench-{RUN}-app-web-1"
    try:
        for i in range(args.pushes):
            time.sleep(0.5 + 0.37 * i)
            pushed = time.monotonic()
            fleet.commit(f"baseline-{i}")
            wait_for(
                lambda: container_env(client, name) == fleet.greeting, 120, "baseline container"
            )
            out.append(time.monotonic() - pushed)
    finally:
        stop.set()
        thread.join(timeout=120)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=1000)
    parser.add_argument("--baseline", type=int, default=10)
    parser.add_argument("--pushes", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", help=argparse.SUPPRESS)
    parser.add_argument("--repo", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--modules", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    client = docker.from_env(timeout=120)
    device = f"bench-{RUN}"
    tmp = Path(tempfile.mkdtemp(prefix="fleetgate-bench-agent-"))
    try:
        image = build_image(client)
        fleet = Fleet(tmp / "served", device, image)
        with git_daemon(tmp / "served") as port:
            url = f"git://127.0.0.1:{port}/fleet"
            idle = idle_passes(args, fleet, url, tmp)
            cleanup_agent(client, device)
            clone, base = baseline(args, url, tmp)
            base_latency = baseline_latency(args, client, fleet, clone)
            for stack in STACKS:
                down = [str(COMPOSE_BIN), "-p", f"bench-{RUN}-{stack}", "down"]
                subprocess.run(down, capture_output=True, check=False)
            latency = agent_latency(args, client, fleet, url, tmp)
        report(idle, base, latency, base_latency)
        ratio = base["cpu_per_iter"] / idle["cpu_per_pass"]
        return 0 if ratio >= 40 and idle["rss_kb"] < 60 * 1024 else 1
    finally:
        cleanup(client, device)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def cleanup_agent(client: docker.DockerClient, device: str) -> None:
    for c in client.containers.list(all=True, filters={"label": f"io.fleetgate.device={device}"}):
        c.remove(force=True)


def report(
    idle: dict[str, Any],
    base: dict[str, float],
    latency: list[tuple[float, float]],
    base_latency: list[float],
) -> None:
    ratio = base["cpu_per_iter"] / idle["cpu_per_pass"]
    wall_ratio = base["wall_per_iter"] / idle["wall_per_pass"]
    print(f"stacks: {', '.join(STACKS)} (one service each); device engine: local Docker")
    print(f"idle passes:            {idle['passes']} ({idle['full_passes']} of them full)")
    print(f"  CPU per idle pass:    {idle['cpu_per_pass'] * 1000:.2f} ms (agent + git children)")
    print(f"  wall per idle pass:   {idle['wall_per_pass'] * 1000:.2f} ms")
    print(
        f"  RSS after passes:     {idle['rss_kb'] / 1024:.1f} MB "
        f"(before them {idle['rss_before_kb'] / 1024:.1f} MB, "
        f"peak {idle['hwm_kb'] / 1024:.1f} MB)  goal < 60 MB"
    )
    print("baseline (git fetch + reset + docker compose up -d per stack):")
    print(f"  CPU per iteration:    {base['cpu_per_iter'] * 1000:.1f} ms")
    print(f"  wall per iteration:   {base['wall_per_iter'] * 1000:.1f} ms")
    print(
        f"idle pass vs baseline:  {ratio:.0f}x cheaper in CPU (goal >= 40x), "
        f"{wall_ratio:.0f}x in wall time"
    )
    for i, (running, converged) in enumerate(latency):
        print(
            f"push -> converged (agent, poll 2s) #{i + 1}: container running {running:.1f}s, "
            f"status succeeded {converged:.1f}s"
        )
    for i, seconds in enumerate(base_latency):
        print(f"push -> running (baseline, 2s loop) #{i + 1}: {seconds:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
