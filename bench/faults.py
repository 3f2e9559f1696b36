"""Randomized fault trials: pick a fault class and a moment, inject, recover, check the end state.

Each fault class has its own device and fleet repository (a lane): a first revision
applied once, a file put in the app's data directory and a foreign container started.
Each trial is an update with one injected fault, then up to three plain ``fleetgate
apply`` runs to recover (until an outcome that is not retried); the next trial of the
class starts from that end state. A wrong end state resets the lane. Each ``fleetgate
apply`` is the CLI's ``main`` in a forked child (see ``Apply``). The end state is checked
against the desired revision (or the last good one when the update was recorded as
failed): exactly one running container per service, the right config hash, no temporary
names, the data file intact, and a foreign (unlabelled) container untouched.

Fault classes:

- ``kill9``: ``fleetgate apply`` SIGKILLed at a random crash point (shared engine);
- ``unstartable``: the new version's host port is held by another process (shared engine);
- ``engine-kill``: the private dockerd SIGKILLed a random 0-3 s into the update, restarted;
- ``power-cut``: apply SIGKILLed at a random crash point and the private engine's whole
  session killed with it, then restarted.

The engine classes run on a private dockerd (tests/support/dockerd.py); the shared one is
never killed. Measured (``--trials 500 --seed 14``, load average 5-15 on 2 shared cores):
about 5-13 s a trial, 0 wrong end states in the first 442 (the run before the fix in
engine/docker.py found the engine-kill wrong state: a half-started container).
Usage: ``.venv/bin/python bench/faults.py --trials 40 [--classes a,b]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.crash import UPDATE_POINTS  # noqa: E402
from support.dockerd import Dockerd  # noqa: E402
from support.engine import BUSYBOX_DOCKERFILE, build_image  # noqa: E402
from support.passes import FleetRepo, broker_on_port  # noqa: E402

import reconciler.cli.apply  # noqa: E402, F401  (imported once, before the children fork)
from reconciler.cli import main as cli_main  # noqa: E402
from reconciler.crashpoints import CRASH_ENV  # noqa: E402
from reconciler.manifests.tree import RepoTree  # noqa: E402
from reconciler.plan.steps import TEMP_MARK  # noqa: E402
from reconciler.render.desired import build_desired  # noqa: E402
from reconciler.store import StateStore  # noqa: E402

CLASSES = ("kill9", "unstartable", "engine-kill", "power-cut")
HEALTH_TIMEOUT = "4s"  # the stacks' healthchecks pass in ~1 s; a timeout rolls back, still checked


@dataclass
class Lane:
    """One fault class's device: set up once, then one update per trial.

    Each trial starts from the end state the previous one left (checked right), so the
    first revision is applied once per lane, not once per trial. A wrong end state
    resets the lane (a fresh device) so one error does not spill into the next trials.
    """

    kind: str
    client: docker.DockerClient
    host: str
    image: str
    tmp: Path
    generation: int = 0
    fleet: FleetRepo | None = None
    state: Path = Path()
    foreign: str = ""

    @property
    def device(self) -> str:
        return f"fgbench-{os.getpid()}-{self.kind}-{self.generation}"

    @property
    def keep(self) -> Path:
        return self.state / "data" / self.device / "app" / "state" / "keep"

    def ready(self) -> str | None:
        """Set the device up unless it is; what went wrong, or ``None``."""
        if self.fleet is not None:
            return None
        base = self.tmp / f"{self.kind}-{self.generation}"
        self.fleet = FleetRepo(base / "fleet", self.device, APP_IMAGE=self.image,
                               BROKER_IMAGE=self.image)  # fmt: skip
        self.state = base / "state"
        ctr = self.client.containers.run(
            self.image, ["sleep", "86400"], detach=True, name=f"{self.device}-foreign"
        )
        self.foreign = ctr.id or ""
        if apply(self.fleet, self.state, self.host) != "succeeded":
            return "first revision did not apply"
        self.keep.write_text("plant")
        return None

    def reset(self) -> None:
        cleanup(self.client, self.device)
        self.generation += 1
        self.fleet = None


class Apply:
    """``fleetgate apply`` in a forked child: the CLI's own ``main``, crash points and all,
    without an interpreter start and imports per run (seconds each on a loaded machine).
    The child writes its JSON result to a pipe; a SIGKILLed child leaves it empty."""

    def __init__(self, fleet: FleetRepo, state: Path, host: str, crash: str | None = None):
        args = ["apply", "--device", fleet.device, "--repo", str(fleet.path), "--output", "json"]
        args += ["--state-dir", str(state), "--health-timeout", HEALTH_TIMEOUT]
        sys.stdout.flush()
        sys.stderr.flush()
        read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            code = 70
            try:
                os.close(read)
                os.dup2(write, 1)
                os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
                os.environ["DOCKER_HOST"] = host
                os.environ.pop(CRASH_ENV, None)
                if crash:
                    os.environ[CRASH_ENV] = crash
                code = cli_main(args)
                sys.stdout.flush()
            finally:
                os._exit(code)
        os.close(write)
        self.read = read

    def outcome(self, timeout: float = 300) -> str:
        """Wait for the child; its outcome, or ``killed`` when it printed none."""
        deadline = time.monotonic() + timeout
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.05)
        with os.fdopen(self.read, "rb") as out:
            return outcome_of(out.read())


def apply(fleet: FleetRepo, state: Path, host: str, crash: str | None = None) -> str:
    """One ``fleetgate apply`` run to its end; its outcome."""
    return Apply(fleet, state, host, crash).outcome()


def outcome_of(stdout: bytes) -> str:
    try:
        return str(json.loads(stdout)["outcome"])
    except (ValueError, KeyError, TypeError):
        return "killed"


def trial(lane: Lane, n: int, private: Dockerd) -> str | None:
    """Run one trial on ``lane``; ``None`` when the end state is right, else what is wrong."""
    problem = lane.ready()
    if problem is not None:
        return problem
    fleet, state, host = lane.fleet, lane.state, lane.host
    assert fleet is not None
    held: socket.socket | None = None
    try:
        if lane.kind == "unstartable":
            held = socket.socket()
            held.bind(("127.0.0.1", 0))
            held.listen(1)
            fleet.write("stacks/mqtt/compose.yaml", broker_on_port(held.getsockname()[1]))
        fleet.commit(f"trial {n}", GREETING=f"g{n}")
        if lane.kind in ("kill9", "power-cut"):
            crash = random.choice(UPDATE_POINTS)
            first = f"{apply(fleet, state, host, crash=crash)} at {crash}"
        elif lane.kind == "unstartable":
            first = apply(fleet, state, host)
        else:
            running = Apply(fleet, state, host)
            moment = random.uniform(0, 3)
            time.sleep(moment)
            private.kill()
            first = f"{running.outcome(120)} (engine killed at {moment:.1f}s)"
        if lane.kind in ("engine-kill", "power-cut"):
            if lane.kind == "power-cut":
                private.power_cut()
            private.start()
            lane.client.close()  # its pooled connections went with the engine
            lane.client = private.client()
        outcomes = [first]
        for _ in range(3):  # recover: until an outcome that is not retried
            outcomes.append(apply(fleet, state, host))
            if outcomes[-1] not in ("failed", "rollback-failed", "killed"):
                break
        problem = check(lane)
        return None if problem is None else f"{problem} (passes: {', '.join(outcomes)})"
    finally:
        if held is not None:
            held.close()


def check(lane: Lane) -> str | None:
    """What is wrong with the lane's end state, or ``None``.

    The foreign container must still run, or, when the engine itself was killed (which
    stops it; fleetgate must not start it again), still exist, stopped.
    """
    fleet, state, client = lane.fleet, lane.state, lane.client
    assert fleet is not None
    engine_restarted = lane.kind in ("engine-kill", "power-cut")
    record = StateStore(state, fleet.device).load()
    failed = {f.revision for f in record.failed}
    desired = build_desired(RepoTree(fleet.path), fleet.head, fleet.device, str(state))
    if fleet.head in failed and record.last_good_state is not None:
        desired = record.last_good_state  # rolled back: the stored last good state
    want = {s.container_name: s.config_hash for s in desired.services}
    found = client.containers.list(
        all=True, filters={"label": f"io.fleetgate.device={fleet.device}"}
    )
    have = {c.name: (c.status, c.labels.get("io.fleetgate.config-hash")) for c in found}
    if any(TEMP_MARK in name for name in have):
        return f"temporary name left: {sorted(have)}"
    if sorted(have) != sorted(want):
        return f"containers {sorted(have)} != {sorted(want)}"
    for name, (status, digest) in have.items():
        if status != "running" or digest != want[name]:
            return f"{name}: {status}, hash {'ok' if digest == want[name] else 'wrong'}"
    if lane.keep.read_text() != "plant":
        return "data file changed"
    with contextlib.suppress(docker.errors.NotFound):
        status = client.containers.get(lane.foreign).status
        if status in ({"running", "exited"} if engine_restarted else {"running"}):
            return None
        return f"foreign container touched ({status})"
    return "foreign container removed"


def cleanup(client: docker.DockerClient, device: str) -> None:
    for c in client.containers.list(all=True, filters={"name": device}):
        with contextlib.suppress(docker.errors.APIError):
            c.remove(force=True, v=True)
    for n in client.networks.list(filters={"label": f"io.fleetgate.device={device}"}):
        with contextlib.suppress(docker.errors.APIError):
            n.remove()
    for v in client.volumes.list(filters={"label": f"io.fleetgate.device={device}"}):
        with contextlib.suppress(docker.errors.APIError):
            v.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--classes", default=",".join(CLASSES))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=None, help="stop starting trials after")
    args = parser.parse_args()
    random.seed(args.seed)
    classes = args.classes.split(",")
    shared = docker.from_env(timeout=120)
    image = "fleetgate-test/busybox:bench"
    build_image(shared, image, BUSYBOX_DOCKERFILE, run_id="bench")
    tally: Counter[tuple[str, str]] = Counter()
    wrong: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fgf-", dir="/tmp") as t:
        private = Dockerd(Path(tempfile.mkdtemp(prefix="fgd-", dir="/tmp")))
        lanes: dict[str, Lane] = {}
        try:
            private.start()
            private.load_image(shared, image)
            for kind in classes:
                on_private = kind in ("engine-kill", "power-cut")
                client = private.client() if on_private else shared
                host = private.host if on_private else "unix:///var/run/docker.sock"
                lanes[kind] = Lane(kind, client, host, image, Path(t))
            for n in range(args.trials):
                if args.minutes is not None and time.monotonic() - started > args.minutes * 60:
                    break
                kind = classes[n % len(classes)]
                began = time.monotonic()
                problem = trial(lanes[kind], n, private)
                tally[kind, "ok" if problem is None else "wrong"] += 1
                if problem is not None:
                    wrong.append(f"{kind} #{n}: {problem}")
                    lanes[kind].reset()
                took = time.monotonic() - began
                print(f"trial {n} {kind}: {problem or 'ok'} ({took:.1f}s)", flush=True)
        finally:
            for lane in lanes.values():
                cleanup(lane.client, lane.device)
            private.close()
    elapsed = time.monotonic() - started
    print(f"\n{'class':<12} {'trials':>6} {'ok':>4} {'wrong':>5}")
    for kind in classes:
        ok, bad = tally[kind, "ok"], tally[kind, "wrong"]
        print(f"{kind:<12} {ok + bad:>6} {ok:>4} {bad:>5}")
    done = sum(tally.values())
    print(f"{done} trials in {elapsed:.0f}s ({elapsed / max(done, 1):.1f}s each)")
    for line in wrong:
        print("WRONG", line)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
