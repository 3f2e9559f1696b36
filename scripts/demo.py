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
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from demo_fleet import FleetView
from demo_procs import (
    Processes,
    agent_config,
    agent_env,
    clean_up,
    demo_containers,
    stop_leftovers,
)
from demo_status import (
    Agent,
    converged,
    failed_reason,
    rollbacks,
    rolled_back,
    show_dashboard,
    show_rollback_log,
    show_status,
)
from demo_tools import (
    EXAMPLE,
    FLEETGATE,
    GIT_ENV,
    DemoError,
    Settings,
    Summary,
    answers,
    commit_change,
    edit,
    free_port,
    git,
    machine_arch,
    run,
    say,
    short,
    show,
    wait_for,
)
from demo_waves import run_waves

# ---------------------------------------------------------------------- the fleet


def publish_fleet(s: Settings) -> str:
    """Copy example-fleet-repo/ into a fresh Git repository; return the first commit."""
    shutil.rmtree(s.served, ignore_errors=True)
    s.served.mkdir(parents=True)
    shutil.copytree(EXAMPLE, s.repo)
    device_file = s.repo / "devices" / "demo.yaml"
    text = device_file.read_text()
    text = edit(text, "arch: amd64", f"arch: {machine_arch()}", device_file)
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


def write_agent_config(s: Settings, git_port: int, status_port: int, broker: str) -> Path:
    config = s.dir / "agent.yaml"
    config.write_text(
        agent_config(s.device, f"git://127.0.0.1:{git_port}/fleet", s.state, status_port, broker)
    )
    return config


# ------------------------------------------------------------------------ commands


def run_demo(s: Settings) -> int:
    started = time.monotonic()
    s.dir.mkdir(parents=True, exist_ok=True)
    stop_leftovers(s)
    FleetView(s.dir).stop()  # the broker and page of an earlier run
    if any(demo_containers(d) for d in (s.device, *s.wave_devices)) or (
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
        procs.start_agent(config, s.dir / "agent.log")
        agent = Agent(procs, status_port, s.dir / "agent.log")

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
            s.repo,
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
            s.repo,
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
        waves = run_waves(s, procs, git_port, fleet.broker_url, summary)
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
    for log, code in procs.agent_exits.items():
        if code not in (0, None):
            raise DemoError(f"an agent exited with code {code} on SIGTERM (see {s.shown(log)})")

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
        (
            f".venv/bin/fleetgate history --device {s.wave_devices[1]} --repo {s.shown(waves)}",
            "the promotion",
        ),
        (s.shown(s.waves), "the waves agents' configs, logs and state"),
    ]
    print("\nLook around (the containers keep running; no agent watches them now):")
    for command, what in look:
        print(f"    {command:<62} {what}".rstrip())
    print("Clean up:")
    data = s.shown(s.state / "data")
    print("    scripts/demo --clean            containers (the waves devices' too), network,")
    print("                                    mosquitto, fleet page, state and logs;")
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
