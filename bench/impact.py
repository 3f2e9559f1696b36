"""Benchmark `fleetgate impact` on the 10,000-device fleet of ``bench/validate.py``.

The fleet is generated (same generator, same seed) into a Git repository and committed;
then one stack's image is bumped (``app-100``, a stack devices pick for themselves) and
committed. `fleetgate impact HEAD~1 HEAD --output json` runs as a subprocess; its wall
time, the child's peak RSS, how many devices it rendered and how many change are printed.
Exit 0 when impact succeeded and named exactly the devices that run the stack.

    .venv/bin/python bench/impact.py [--devices N] [--stacks N] [--stack NAME] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.validate import generate  # the validate benchmark's fleet

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@plant.example",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@plant.example",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--stacks", type=int, default=200)
    parser.add_argument("--stack", default="app-100", help="the stack whose image is bumped")
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as tmp:
        root = args.keep or Path(tmp) / "fleet"
        started = time.perf_counter()
        generate(root, args.devices, args.stacks)
        git("init", "--quiet", "--initial-branch=main", cwd=root)
        git("add", "--all", cwd=root)
        git("commit", "--quiet", "-m", "fleet", cwd=root)
        compose = root / "stacks" / args.stack / "compose.yaml"
        text = compose.read_text()
        bumped = text.replace(":1.", ":9.", 1)
        compose.write_text(bumped)
        git("commit", "--quiet", "-am", f"bump {args.stack}", cwd=root)
        print(
            f"generated and committed {args.devices} devices, {args.stacks} stacks "
            f"in {time.perf_counter() - started:.1f}s"
        )
        command = [
            sys.executable, "-m", "reconciler", "impact", "HEAD~1", "HEAD",
            "--repo", str(root), "--output", "json", "--cache-dir", str(Path(tmp) / "cache"),
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if done.returncode != 0:
            print(done.stderr.strip()[-2000:])
            print(f"impact: exit {done.returncode}, wall {wall:.2f}s")
            return 1
        result = json.loads(done.stdout)
        changed = {d["device"] for d in result["devices"]}
        expected = {
            p.stem
            for p in (root / "devices").iterdir()
            if args.stack in p.read_text().partition("stacks: [")[2]
        }
        print(
            f"impact: exit 0, wall {wall:.2f}s, peak RSS {peak_mib:.0f} MiB, "
            f"rendered {result['rendered']} of {result['total']} devices, "
            f"{len(changed)} change (expected {len(expected)})"
        )
        return 0 if changed == expected else 1


if __name__ == "__main__":
    sys.exit(main())
