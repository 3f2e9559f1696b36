"""Footprint and speed of the agent as a device runs it, in one run (issue 13, points 4-6).

Printed:

1. **idle agent**: ``bench/agent.py --child`` (the agent built as ``fleetgate agent``
   builds it, in a fresh interpreter) converges a two-stack fleet served by ``git
   daemon``, then runs ``--passes`` (default 1,000) timer passes: RSS after them (and
   before, to see growth) and CPU per idle pass.
2. **no-change apply**: 10 projects / 30 services (busybox ``sleep``), converged once;
   then, ``--repeat`` times each, a fresh ``fleetgate apply`` process (nothing to do)
   and ``docker compose up -d`` over the same 10 projects (nothing to do either),
   wall time, median; and the ratio.
3. **cold start**: ``fleetgate --version`` and ``fleetgate validate`` of the example
   fleet as fresh processes, median wall time.
4. **image sizes**: every ``fleetgate:<version>*`` image present (``scripts/image``).

    .venv/bin/python bench/footprint.py [--passes 1000] [--repeat 5]
        [--only idle|no-change|cold|images] [--image fleetgate:0.1.0] [--breakdown]
        [--before CMD]

``--only SECTION`` runs that section alone. ``--image``: the idle agent runs in that
image (its Python and wheels, as a device runs it) with this checkout's ``reconciler``
mounted over the installed one. ``--breakdown``: the RSS each package adds, by importing
the idle agent's modules again in their order in a fresh interpreter. ``--before CMD``
also times another ``fleetgate`` (e.g. a wrapper running an older checkout) on the same
converged device in the same run, for a before/after figure.

Everything created carries the run's label / device id and is removed at the end.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import docker
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import agent as bench_agent  # bench/agent.py: fixtures shared with it

ROOT = Path(__file__).resolve().parent.parent
FLEETGATE = ROOT / ".venv" / "bin" / "fleetgate"
COMPOSE_BIN = ROOT / ".venv" / "bin" / "docker-compose"
RUN = bench_agent.RUN
LABEL = bench_agent.LABEL
PROJECTS = 10
SERVICES = 3


def timed(cmd: list[str], repeat: int, **kw: Any) -> float:
    """Median wall seconds of ``cmd`` as a fresh process (fails loudly)."""
    walls = []
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
        walls.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])}: exit {proc.returncode}: {proc.stderr[-800:]}")
    return statistics.median(walls)


def big_fleet(path: Path, device: str, image: str) -> None:
    """A repository with PROJECTS stacks of SERVICES services for ``device``."""
    path.mkdir(parents=True)
    bench_agent.git("init", "--quiet", "--initial-branch=main", ".", cwd=path)
    stacks = [f"s{i:02d}" for i in range(PROJECTS)]
    for stack in stacks:
        services = {
            f"svc{j}": {
                "image": image, "command": ["sleep", "3600"], "init": True,
                "stop_grace_period": "1s", "labels": {LABEL: RUN},
            }
            for j in range(SERVICES)
        }  # fmt: skip
        folder = path / "stacks" / stack
        folder.mkdir(parents=True)
        (folder / "compose.yaml").write_text(yaml.safe_dump({"services": services}))
    (path / "devices").mkdir()
    (path / "devices" / f"{device}.yaml").write_text(yaml.safe_dump({"stacks": stacks}))
    (path / "fleet.yaml").write_text("{}\n")
    bench_agent.git("add", "--all", cwd=path)
    bench_agent.git("commit", "--quiet", "-m", "big fleet", cwd=path)


def no_change(args: argparse.Namespace, image: str, tmp: Path) -> dict[str, float]:
    device = f"fp-{RUN}"
    repo = tmp / "big"
    big_fleet(repo, device, image)
    state = tmp / "state-apply"
    apply = [str(FLEETGATE), "apply", "--device", device, "--repo", str(repo),
             "--state-dir", str(state)]  # fmt: skip
    compose = [
        [str(COMPOSE_BIN), "-p", f"fp-{RUN}-{stack.name}", "-f", str(stack / "compose.yaml"),
         "up", "-d", "--quiet-pull"]
        for stack in sorted((repo / "stacks").iterdir())
    ]  # fmt: skip
    try:
        timed(apply, 1, timeout=600)  # converge once: creates the 30 containers
        for cmd in compose:
            timed(cmd, 1, timeout=300)
        # Interleaved (apply, before, compose in each round) so that a machine whose load
        # changes during the run weighs on every side alike; medians of the rounds.
        fgs, befores, walls = [], [], []
        for _ in range(args.repeat):
            fgs.append(timed(apply, 1, timeout=120))
            if args.before:
                befores.append(timed([args.before, *apply[1:]], 1, timeout=120))
            start = time.perf_counter()
            for cmd in compose:
                timed(cmd, 1, timeout=120)
            walls.append(time.perf_counter() - start)
        fg, dc = statistics.median(fgs), statistics.median(walls)
        before = statistics.median(befores) if befores else 0.0
    finally:
        client = docker.from_env()
        bench_agent.cleanup(client, device)
        for c in client.containers.list(all=True, filters={"label": f"{LABEL}={RUN}"}):
            c.remove(force=True)
        for n in client.networks.list():
            if n.name.startswith(f"fp-{RUN}-"):
                n.remove()
    result = {"apply_s": fg, "compose_s": dc, "ratio": dc / fg}
    if args.before:
        result |= {"before_apply_s": before, "before_ratio": dc / before}
    return result


def idle(args: argparse.Namespace, image: str, tmp: Path) -> dict[str, Any]:
    """The idle child's figures. On an engine shared with other work the fleet's two
    networks may find no free address pool for a while: then it waits and tries again."""
    for attempt in range(6):
        fleet = bench_agent.Fleet(tmp / f"served-{attempt}", f"fi-{RUN}", image)
        with bench_agent.git_daemon(tmp / f"served-{attempt}") as port:
            ns = argparse.Namespace(passes=args.passes, modules=args.modules, image=args.image)
            try:
                return bench_agent.idle_passes(ns, fleet, f"git://127.0.0.1:{port}/fleet", tmp)
            except RuntimeError as e:
                if "address pool" not in str(e) or attempt == 5:
                    raise
                print("idle: no free network address pool on the engine, retrying in 20 s",
                      file=sys.stderr)  # fmt: skip
            finally:
                client = docker.from_env()
                bench_agent.cleanup_agent(client, fleet.device)
                owned = {"label": f"io.fleetgate.device={fleet.device}"}
                for n in client.networks.list(filters=owned):
                    n.remove()
        shutil.rmtree(tmp / f"state-idle{'-image' if args.image else ''}", ignore_errors=True)
        time.sleep(20)
    raise AssertionError("unreachable")


REPLAY = """
import importlib, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
costs, last = {}, rss()
costs["interpreter"] = last
for name in sys.argv[1:]:
    if name in sys.modules or name.startswith("__"):
        continue
    try:
        importlib.import_module(name)
    except Exception:
        continue
    now = rss()
    parts = name.split(".")
    group = ".".join(parts[:2]) if parts[0] == "reconciler" else parts[0]
    costs[group] = costs.get(group, 0) + now - last
    last = now
print(repr(costs))
"""


def breakdown(modules: Path, image: str | None) -> dict[str, int]:
    """RSS (kB) each package adds when the idle agent's modules are imported again in its
    order, in a fresh interpreter: what each import costs, not the heap a pass built."""
    names = modules.read_text().split()
    python = [sys.executable]
    if image:
        site = "/usr/local/lib/python3.11/dist-packages/reconciler"
        python = ["docker", "run", "--rm", "-v", f"{ROOT / 'reconciler'}:{site}:ro",
                  "--entrypoint", "python3", image]  # fmt: skip
    out = subprocess.run([*python, "-c", REPLAY, *names], capture_output=True, text=True,
                         check=True, cwd=ROOT)  # fmt: skip
    costs: dict[str, int] = ast.literal_eval(out.stdout.strip())
    return costs


def cold_start(repeat: int) -> dict[str, float]:
    example = ROOT / "example-fleet-repo"
    return {
        "version_s": timed([str(FLEETGATE), "--version"], repeat),
        "validate_s": timed([str(FLEETGATE), "validate", "--repo", str(example)], repeat),
    }


def image_sizes() -> dict[str, float]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    client = docker.from_env()
    sizes = {}
    for image in client.images.list(name="fleetgate"):
        for tag in image.tags:
            if tag.startswith(f"fleetgate:{version}"):
                sizes[tag] = image.attrs["Size"] / 1e6
    return sizes


SECTIONS = ("idle", "no-change", "cold", "images")


def print_idle(i: dict[str, Any]) -> None:
    rss, before, hwm = (i[k] / 1024 for k in ("rss_kb", "rss_before_kb", "hwm_kb"))
    print(f"idle agent after {i['passes']} passes: RSS {rss:.1f} MB (before them "
          f"{before:.1f} MB, peak {hwm:.1f} MB), CPU {i['cpu_per_pass'] * 1000:.2f} ms"
          " per idle pass", flush=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=SECTIONS, default=None, help="run one section alone")
    parser.add_argument(
        "--image",
        default=None,
        help="run the idle agent in this image (scripts/image), "
        "with this checkout's reconciler mounted over its own",
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="RSS each package of the idle agent adds"
    )
    parser.add_argument("--before", default=None, help="another fleetgate to time (no-change)")
    args = parser.parse_args()
    args.modules = None
    wanted = SECTIONS if args.only is None else (args.only,)
    client = docker.from_env()
    results: dict[str, Any] = {}
    if "idle" in wanted or "no-change" in wanted:
        image = bench_agent.build_image(client)
        try:
            with tempfile.TemporaryDirectory(prefix="fleetgate-footprint-") as t:
                tmp = Path(t)
                if "idle" in wanted:
                    if args.breakdown:
                        args.modules = str(tmp / "modules.txt")
                    results["idle"] = idle(args, image, tmp)
                    print_idle(results["idle"])
                    if args.breakdown:
                        costs = breakdown(Path(args.modules), args.image)
                        results["breakdown_kb"] = costs
                        total = sum(costs.values())
                        print(f"import replay: {total / 1024:.1f} MB; the largest shares:")
                        for group, kb in sorted(costs.items(), key=lambda kv: -kv[1])[:25]:
                            print(f"  {group:32s} {kb / 1024:5.1f} MB")
                if "no-change" in wanted:
                    results["no_change"] = n = no_change(args, image, tmp)
                    print(f"no-change, {PROJECTS} projects / {PROJECTS * SERVICES} services: "
                          f"fleetgate apply {n['apply_s'] * 1000:.0f} ms, docker compose up -d "
                          f"{n['compose_s'] * 1000:.0f} ms: {n['ratio']:.1f}x "
                          f"(load {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
                    if args.before:
                        print(f"  before: {args.before} {n['before_apply_s'] * 1000:.0f} ms: "
                              f"{n['before_ratio']:.1f}x", flush=True)  # fmt: skip
        finally:
            bench_agent.cleanup(client, f"fi-{RUN}")
    if "cold" in wanted:
        results["cold"] = c = cold_start(args.repeat)
        print(f"cold start: fleetgate --version {c['version_s'] * 1000:.0f} ms, "
              f"validate (example fleet) {c['validate_s'] * 1000:.0f} ms")  # fmt: skip
    if "images" in wanted:
        results["images_mb"] = image_sizes()
        for tag, mb in sorted(results["images_mb"].items()):
            print(f"image {tag}: {mb:.1f} MB")
        if not results["images_mb"]:
            print("image: none built (scripts/image)")
    print(json.dumps(results), file=sys.stderr if os.environ.get("FOOTPRINT_QUIET") else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
