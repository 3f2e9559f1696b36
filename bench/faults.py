"""Randomized fault trials: pick a fault class and a moment, inject, recover, check the end state.

Each trial: a fresh device and fleet repository, a first revision applied, a file put in
the app's data directory, then an update with one injected fault, then up to three
plain ``fleetgate apply`` runs to recover. The end state is checked against the desired
revision (or the last good one when the update was recorded as failed): exactly one
running container per service, the right config hash, no temporary names, the data
file intact, and a foreign (unlabelled) container untouched.

Fault classes:

- ``kill9``: ``fleetgate apply`` SIGKILLed at a random crash point (shared engine);
- ``unstartable``: the new version's host port is held by another process (shared engine);
- ``engine-kill``: the private dockerd SIGKILLed a random 0-3 s into the update, restarted;
- ``power-cut``: apply SIGKILLed at a random crash point and the private engine's whole
  session killed with it, then restarted.

The engine classes run on a private dockerd (tests/support/dockerd.py); the shared one is
never killed. Usage: ``.venv/bin/python bench/faults.py --trials 40 [--classes a,b]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.crash import UPDATE_POINTS  # noqa: E402
from support.dockerd import Dockerd  # noqa: E402
from support.engine import BUSYBOX_DOCKERFILE, build_image  # noqa: E402
from test_reconcile import FleetRepo  # noqa: E402

from reconciler.manifests.tree import RepoTree  # noqa: E402
from reconciler.plan.steps import TEMP_MARK  # noqa: E402
from reconciler.render.desired import build_desired  # noqa: E402
from reconciler.store import StateStore  # noqa: E402

CLASSES = ("kill9", "unstartable", "engine-kill", "power-cut")
PORTED = """\
services:
  broker:
    image: ${{BROKER_IMAGE}}
    command: ["sleep", "3600"]
    init: true
    stop_grace_period: 1s
    environment:
      GREETING: ${{GREETING}}
    networks: [bus]
    ports: ["127.0.0.1:{port}:8080"]
networks:
  bus: {{}}
"""


def apply(fleet: FleetRepo, state: Path, host: str, crash: str | None = None) -> int:
    env = {**os.environ, "DOCKER_HOST": host}
    env.pop("FLEETGATE_CRASH_AT", None)
    if crash:
        env["FLEETGATE_CRASH_AT"] = crash
    args = ["apply", "--device", fleet.device, "--repo", str(fleet.path)]
    args += ["--state-dir", str(state), "--health-timeout", "8s"]
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    return proc.returncode


def trial(
    kind: str,
    n: int,
    *,
    shared: docker.DockerClient,
    image: str,
    tmp: Path,
    private: Dockerd,
) -> str | None:
    """Run one trial; ``None`` when the end state is right, else what is wrong."""
    device = f"fgbench-{os.getpid()}-{n}"
    on_private = kind in ("engine-kill", "power-cut")
    host = private.host if on_private else "unix:///var/run/docker.sock"
    client = private.client() if on_private else shared
    fleet = FleetRepo(tmp / f"fleet{n}", device, APP_IMAGE=image, BROKER_IMAGE=image)
    state = tmp / f"state{n}"
    foreign = client.containers.run(image, ["sleep", "600"], detach=True, name=f"{device}-foreign")
    held: socket.socket | None = None
    try:
        if apply(fleet, state, host) != 0:
            return "first revision did not apply"
        keep = state / "data" / device / "app" / "state" / "keep"
        keep.write_text("plant")
        if kind == "unstartable":
            held = socket.socket()
            held.bind(("127.0.0.1", 0))
            held.listen(1)
            fleet.write("stacks/mqtt/compose.yaml", PORTED.format(port=held.getsockname()[1]))
        fleet.commit(f"trial {n}", GREETING=f"g{n}")
        if kind == "kill9":
            apply(fleet, state, host, crash=random.choice(UPDATE_POINTS))
        elif kind == "unstartable":
            apply(fleet, state, host)
        elif kind == "engine-kill":
            env = {**os.environ, "DOCKER_HOST": host}
            args = [
                "apply",
                "--device",
                device,
                "--repo",
                str(fleet.path),
                "--state-dir",
                str(state),
            ]
            proc = subprocess.Popen(
                [sys.executable, "-m", "reconciler", *args], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(random.uniform(0, 3))
            private.kill()
            proc.wait(120)
            private.start()
        else:
            apply(fleet, state, host, crash=random.choice(UPDATE_POINTS))
            private.power_cut()
            private.start()
        for _ in range(3):
            if apply(fleet, state, host) == 0:
                break
        return check(client, fleet, state, foreign.id, keep, engine_restarted=on_private)
    finally:
        if held is not None:
            held.close()
        cleanup(client, device)
        if on_private:
            client.close()


def check(client: docker.DockerClient, fleet: FleetRepo, state: Path, foreign: str,
          keep: Path, *, engine_restarted: bool) -> str | None:  # fmt: skip
    """What is wrong with the end state, or ``None``.

    The foreign container must still run, or, when the engine itself was killed (which
    stops it; fleetgate must not start it again), still exist, stopped.
    """
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
    if keep.read_text() != "plant":
        return "data file changed"
    with contextlib.suppress(docker.errors.NotFound):
        status = client.containers.get(foreign).status
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
        try:
            private.start()
            private.load_image(shared, image)
            for n in range(args.trials):
                if args.minutes is not None and time.monotonic() - started > args.minutes * 60:
                    break
                kind = classes[n % len(classes)]
                problem = trial(kind, n, shared=shared, image=image, tmp=Path(t), private=private)
                tally[kind, "ok" if problem is None else "wrong"] += 1
                if problem is not None:
                    wrong.append(f"{kind} #{n}: {problem}")
                print(f"trial {n} {kind}: {problem or 'ok'}", flush=True)
        finally:
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
