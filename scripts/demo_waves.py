"""The rollout-waves part of ``scripts/demo`` (docs/waves.md), after the single device.

Three more agents on the same engine, as devices ``<device>-lab`` (wave ``lab``) and
``<device>-line-1`` / ``<device>-line-2`` (wave ``production``), pull a second small
fleet repository, ``waves``, from the demo's git daemon and report to its Mosquitto
under their own topic (``fleetgate-waves``: the main demo's fleet page stays as it
was). The story, each step timed:

1. a commit (sensor software 1) reaches the lab at once; production holds
   (``waiting``: the wave has no pin yet);
2. ``fleetgate promote production`` before the soak refuses (exit 3, one line per unmet
   condition) and writes nothing;
3. once the lab ran the release healthy for the soak (20 s here, ``24h`` in a plant),
   ``fleetgate promote production`` commits ``waves/production.yaml``;
4. ``fleetgate impact`` of the promotion shows what it lands on each production device;
   both converge on the pinned revision.

Their containers keep running like the main demo's; ``scripts/demo --clean`` removes
them and ``.demo/waves/`` (configs, logs and state of the three agents).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from demo_procs import Processes, agent_config
from demo_status import Agent, converged
from demo_tools import (
    EXAMPLE,
    FLEETGATE,
    GIT_ENV,
    DemoError,
    Settings,
    Summary,
    free_port,
    git,
    machine_arch,
    run,
    say,
    short,
    show,
    wait_for,
)

TOPIC = "fleetgate-waves"
PROMOTE = (str(FLEETGATE), "promote", "production")
FLEET = """\
# The waves part of scripts/demo: the lab first, production on evidence (docs/waves.md).
rollout:
  waves:
    - name: lab
      selector: {{ring: lab}}
    - name: production
      selector: {{}}        # every other device
      maxFailed: 0        # lab devices that may be failed, rolled back, offline or silent
      # how long the lab runs a release healthy before production may follow (a plant: 24h)
      soak: {soak}s
"""
STACK = """\
requires:
  arch: [amd64, arm64]
variables:
  DEMO_INTERVAL: "2"
healthTimeout: 1m
"""
COMPOSE = """\
services:
  sensor:
    image: fleetgate-demo/sensor:1
    pull_policy: never
    restart: unless-stopped
    init: true
    environment:
      SENSOR_NAME: ${FLEETGATE_DEVICE}
      INTERVAL: ${DEMO_INTERVAL}
      DEVICE_ID: ${FLEETGATE_DEVICE}
    volumes:
      - ./sensor.conf:/etc/sensor/sensor.conf:ro
      - ./data:/data
    healthcheck:
      test: ["CMD", "test", "-s", "/data/latest.json"]
      interval: 2s
      timeout: 2s
      retries: 5
      start_period: 5s
    stop_grace_period: 5s
"""


def publish_waves(s: Settings) -> tuple[Path, str]:
    """The ``waves`` fleet repository (served beside ``fleet``); its path and first commit."""
    repo = s.served / "waves"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "stacks" / "line").mkdir(parents=True)
    (repo / "devices").mkdir()
    (repo / "fleet.yaml").write_text(FLEET.format(soak=s.soak))
    (repo / "stacks" / "line" / "stack.yaml").write_text(STACK)
    (repo / "stacks" / "line" / "compose.yaml").write_text(COMPOSE)
    shutil.copy(EXAMPLE / "stacks" / "demo" / "sensor.conf", repo / "stacks" / "line")
    arch = machine_arch()
    for device in s.wave_devices:
        ring = "lab" if device.endswith("-lab") else "production"
        (repo / "devices" / f"{device}.yaml").write_text(
            f"labels: {{ring: {ring}}}\narch: {arch}\nupdateWindows: []\nstacks: [line]\n"
        )
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "line: sensor software 1 on the lab and production")
    return repo, git(repo, "rev-parse", "HEAD")


def promote(repo: Path, broker: str, *extra: str) -> tuple[int, list[str]]:
    """``fleetgate promote production``: its exit code and its output lines."""
    done = run(
        [*PROMOTE, "--broker", broker, "--topic", TOPIC, "--repo", str(repo), *extra],
        env=GIT_ENV,
        check=False,
    )
    if done.returncode not in (0, 3):
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise DemoError(f"fleetgate promote failed: {last}")
    return done.returncode, (done.stdout + done.stderr).strip().splitlines()


def holding(agent: Agent) -> Callable[[], dict[str, Any] | None]:
    """A production device reporting that its wave has not started (it runs nothing new)."""

    def check() -> dict[str, Any] | None:
        st = agent.status()
        reason = str((st or {}).get("reason") or "")
        ok = st is not None and st.get("outcome") == "waiting" and "not started" in reason
        return st if ok else None

    return check


def settle(agent: Agent, revision: str, timeout: float, device: str) -> None:
    """Wait for ``device`` to converge on ``revision``; a time-out says what it reports."""
    try:
        wait_for(converged(agent, revision), timeout, f"{device} to converge")
    except DemoError as e:
        st = agent.status() or {}
        lines = agent.log.read_text(errors="replace").strip().splitlines() or ["no output"]
        raise DemoError(
            f"{e}; it reports {st.get('outcome')}: {st.get('reason')}; "
            f"its log ({agent.log}) ends: {lines[-1][:300]}"
        ) from None


def run_waves(s: Settings, procs: Processes, git_port: int, broker: str, summary: Summary) -> Path:
    """The waves story (module docstring); the ``waves`` repository it made."""
    lab, *line = s.wave_devices
    say(f"rollout waves: {lab} is the lab, {' and '.join(line)} are production")
    repo, release = publish_waves(s)
    show(FLEET.format(soak=s.soak).split("\n", 1)[1])
    show(f"git://127.0.0.1:{git_port}/waves: branch main at {short(release)} (sensor software 1)")
    t0 = time.monotonic()
    s.waves.mkdir(parents=True, exist_ok=True)
    agents: dict[str, Agent] = {}
    for device in s.wave_devices:
        port = free_port()
        config = s.waves / f"{device}.yaml"
        url = f"git://127.0.0.1:{git_port}/waves"
        state = s.waves / device
        config.write_text(
            agent_config(device, url, state, port, broker, report_interval="2s", topic=TOPIC)
        )
        procs.start_agent(config, s.waves / f"{device}.log")
        agents[device] = Agent(procs, port, s.waves / f"{device}.log")
    say(f"three agents started (configs and logs in {s.shown(s.waves)}); waiting for the lab")

    settle(agents[lab], release, s.timeout, lab)
    lab_good = time.monotonic()
    took = lab_good - t0
    show(f"{took:5.1f}s  {lab} (lab) converged on {short(release)} and is healthy")
    summary.add("waves: lab", release, f"the lab converged {took:.1f}s after the commit")
    for device in line:
        st = wait_for(holding(agents[device]), s.timeout, f"{device} to hold")
        took = time.monotonic() - t0
        show(f"{took:5.1f}s  {device} (production) holds: {st.get('reason')}")
    summary.add("waves: production holds", release, "waiting: no pin for production yet")

    say("fleetgate promote production   (before the soak: the gate is not met)")
    code, lines = promote(repo, broker)
    took = time.monotonic() - t0
    if code != 3:
        raise DemoError(f"promote before the soak exited {code}, not 3: {lines[-1:]}")
    show("\n".join(lines))
    if git(repo, "rev-parse", "HEAD") != release:
        raise DemoError("promote refused but wrote a commit")
    show(f"{took:5.1f}s  exit 3, nothing written: HEAD is still {short(release)}")
    summary.add("waves: promote (early)", release, f"refused at {took:.1f}s (exit 3, not soaked)")

    say(f"waiting for the soak ({s.soak}s of healthy lab reports), then promote --dry-run")
    time.sleep(max(0.0, lab_good + s.soak - time.monotonic()))

    def gate_holds() -> bool | None:
        if promote(repo, broker, "--dry-run")[0] == 0:
            return True
        time.sleep(1.5)
        return None

    wait_for(gate_holds, s.timeout, "the promotion gate to hold")
    say("fleetgate promote production   (after the soak)")
    code, lines = promote(repo, broker)
    if code != 0:
        raise DemoError(f"promote after the soak exited {code}: {lines[-1:]}")
    promoted = time.monotonic()
    pin = git(repo, "rev-parse", "HEAD")
    show("\n".join(lines))
    show(f"{promoted - t0:5.1f}s  commit {short(pin)} '{git(repo, 'log', '-1', '--format=%s')}'")
    summary.add("waves: promote", pin, f"committed at {promoted - t0:.1f}s, after the soak")
    say(f"fleetgate impact HEAD~1 HEAD --repo {s.shown(repo)}   (what the promotion lands)")
    show(run([FLEETGATE, "impact", "HEAD~1", "HEAD", "--repo", repo]).stdout)

    say("waiting for production to converge on the pinned revision")
    for device in line:
        settle(agents[device], release, s.timeout, device)
        took = time.monotonic() - promoted
        show(f"{promoted - t0 + took:5.1f}s  {device} converged on {short(release)}")
    took = time.monotonic() - promoted
    summary.add("waves: production", release, f"converged {took:.1f}s after the promotion")

    say(f"fleetgate fleet status --broker {broker} --topic {TOPIC} --repo {s.shown(repo)}")
    fleet_status = ("fleet", "status", "--broker", broker, "--topic", TOPIC, "--repo", str(repo))
    show(run([FLEETGATE, *fleet_status]).stdout)
    document = json.loads(run([FLEETGATE, *fleet_status, "--output", "json"]).stdout)
    show("\n".join(wave_lines(document.get("waves") or [])))
    return repo


def wave_lines(waves: list[dict[str, Any]]) -> list[str]:
    """The ``waves`` of ``fleet status --output json``, one line each."""
    lines = ["WAVE        REVISION  RUNNING IT  SOAK"]
    for wave in waves:
        running = f"{wave.get('running')} of {wave.get('devices')}"
        line = f"{wave.get('wave')!s:<11} {short(wave.get('revision')):<9} {running:<11} "
        lines.append(line + str(wave.get("soak")))
    return lines
