"""Benchmark `fleetgate validate` on a realistic large fleet: 10,000 devices, 200 stacks.

The fleet: 10 sites (a group each, with the site's update window and time zone),
5 lines per site (a group each adding a line stack), 3 rings (a group each), 200
stacks of 1-3 services with configs, named volumes, healthchecks and per-device
variables; every device declares its PLC_ADDRESS and 1-2 stacks of its own, so it runs
2-4 stacks. `fleetgate validate` runs as a subprocess; wall time and the child's peak
RSS are printed. Exit 0 when the fleet validated as valid.

    .venv/bin/python bench/validate.py [--devices N] [--stacks N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SITES = [
    ("hannover", "Europe/Berlin"),
    ("brno", "Europe/Prague"),
    ("lyon", "Europe/Paris"),
    ("torino", "Europe/Rome"),
    ("katowice", "Europe/Warsaw"),
    ("porto", "Europe/Lisbon"),
    ("detroit", "America/Detroit"),
    ("monterrey", "America/Monterrey"),
    ("pune", "Asia/Kolkata"),
    ("suzhou", "Asia/Shanghai"),
]
RINGS = ("canary", "early", "production")

COMPOSE = """\
services:
  app:
    image: registry.plant.example/ot/{name}:1.{n}.0
    environment:
      PLC_ADDRESS: ${{PLC_ADDRESS:?set PLC_ADDRESS for this device}}
      SITE: ${{SITE}}
      LOG_LEVEL: ${{LOG_LEVEL:-info}}
    ports: ["${{PORT_{n}:-{port}}}:8080"]
    volumes:
      - ./config:/etc/app:ro
      - data:/var/lib/app
      - ${{FLEETGATE_LOCK_DIR}}:/run/fleetgate
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://localhost:8080/health"]
      interval: 30s
      timeout: 5s
      retries: 3
    depends_on:
      cache: {{condition: service_healthy}}
    mem_limit: 256m
    logging: {{driver: json-file, options: {{max-size: 10m}}}}
  cache:
    image: docker.io/library/redis:7.2
    restart: always
    healthcheck: {{test: ["CMD", "redis-cli", "ping"], interval: 10s}}
{extra}volumes:
  data: {{}}
"""
EXTRA = """\
  exporter:
    image: registry.plant.example/ot/exporter:2.1
    command: ["--target", "${PLC_ADDRESS}"]
    restart: unless-stopped
"""


def generate(root: Path, devices: int, stacks: int) -> None:
    rng = random.Random(42)
    (root / "devices").mkdir(parents=True)
    (root / "groups").mkdir()
    (root / "fleet.yaml").write_text(
        "variables: {LOG_LEVEL: info}\npolicy:\n"
        "  registries: [docker.io, registry.plant.example]\n"
        "  hostPaths: [/var/lib/plc]\n  devices: ['/dev/ttyUSB*']\n"
    )
    names = [f"app-{i:03d}" for i in range(stacks)]
    for n, name in enumerate(names):
        folder = root / "stacks" / name
        (folder / "config").mkdir(parents=True)
        (folder / "config/app.conf").write_text(f"name={name}\n")
        extra = EXTRA if n % 3 == 0 else ""
        text = COMPOSE.format(name=name, n=n, port=10000 + n, extra=extra)
        (folder / "compose.yaml").write_text(text)
        if n % 4 == 0:
            (folder / "stack.yaml").write_text(
                "requires: {arch: [arm64, amd64]}\nhealthTimeout: 3m\n"
                "variables: {LOG_LEVEL: warn}\n"
            )
    for s, (site, zone) in enumerate(SITES):
        (root / f"groups/site-{site}.yaml").write_text(
            f"selector: {{site: {site}}}\nstacks: [{names[s]}]\nvariables: {{SITE: {site}}}\n"
            "updateWindows:\n"
            f"  - {{days: [sat, sun], start: '02:00', end: '06:00', timezone: {zone}}}\n"
        )
        for line in range(5):
            (root / f"groups/line-{site}-{line}.yaml").write_text(
                f"selector: {{site: {site}, line: l{line}}}\nstacks: [{names[10 + s * 5 + line]}]\n"
            )
    for ring in RINGS:
        (root / f"groups/ring-{ring}.yaml").write_text(
            f"selector: {{ring: {ring}}}\nvariables: {{RING: {ring}}}\n"
        )
    own_pool = names[60:]
    for d in range(devices):
        site, _ = SITES[d % len(SITES)]
        own = rng.sample(own_pool, rng.randint(0, 2))
        (root / f"devices/{site}-{d:05d}.yaml").write_text(
            f"labels: {{site: {site}, line: l{d % 5}, ring: {RINGS[d % 3]}}}\n"
            f"arch: {'arm64' if d % 2 else 'amd64'}\n"
            f"variables: {{PLC_ADDRESS: 10.{d // 65536}.{d // 256 % 256}.{d % 256}}}\n"
            f"stacks: [{', '.join(own)}]\n"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--stacks", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as tmp:
        root = args.keep or Path(tmp) / "fleet"
        started = time.perf_counter()
        generate(root, args.devices, args.stacks)
        print(
            f"generated {args.devices} devices, {args.stacks} stacks "
            f"in {time.perf_counter() - started:.1f}s"
        )
        command = [sys.executable, "-m", "reconciler", "validate", "--repo", str(root)]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(done.stdout[-2000:], end="")
        print(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "(no summary)")
        print(f"validate: exit {done.returncode}, wall {wall:.2f}s, peak RSS {peak_mib:.0f} MiB")
        return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
