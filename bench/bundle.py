"""Benchmark bundles that carry images: sizes and times, full and delta; import + converge.

Set-up: the example fleet's eight images (opcua-bridge, influxdb, telegraf,
anomaly-detector, mosquitto, node-red, sensor, dashboard) as stand-ins built locally:
``FROM scratch`` + the static busybox (one shared base, two layers) + a payload layer of
``--payload`` MiB of random bytes each (random: layers are stored uncompressed, as
``docker save`` gives them). One device runs all eight in one stack, in a Git repository
made for the run. Everything is named ``fleetgate-bench/*:<run>`` / device
``bench-<run>`` and removed at the end.

Measured with the real command line (``python -m reconciler``):

1. **full**: ``bundle create --images --device`` (time, file size, blobs);
2. **delta**: one image rebuilt (a new payload), committed, ``bundle create --images
   --since full.fgb``: only that image's new layer travels;
3. **import + converge**: the eight images removed from the engine, ``bundle import
   --device`` (verify every blob, ``docker load``), then ``apply`` of the imported revision
   (the eight containers created and started, health gate included).

    .venv/bin/python bench/bundle.py [--payload 8]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("opcua-bridge", "influxdb", "telegraf", "anomaly-detector", "mosquitto", "node-red",
         "sensor", "dashboard")  # fmt: skip
RUN = secrets.token_hex(3)
DEVICE = f"bench-{RUN}"
ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example"}  # fmt: skip


def sh(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:4])}... failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def fleetgate(*args: str) -> float:
    started = time.monotonic()
    sh(sys.executable, "-m", "reconciler", *args, cwd=ROOT)
    return time.monotonic() - started


def build(work: Path, name: str, mib: int) -> str:
    ctx = work / f"ctx-{name}"
    ctx.mkdir(exist_ok=True)
    shutil.copy("/bin/busybox", ctx / "busybox")
    (ctx / "payload").write_bytes(os.urandom(mib * 1024 * 1024))
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nCOPY payload /payload\n'
    )
    tag = f"fleetgate-bench/{name}:{RUN}"
    sh("docker", "build", "-q", "--network", "none", "-t", tag, str(ctx))
    return tag


def fleet(repo: Path, images: list[str]) -> None:
    services = {
        name: {"image": image, "command": ["sleep", "3600"], "init": True,
               "stop_grace_period": "1s"}
        for name, image in zip(NAMES, images, strict=True)
    }  # fmt: skip
    files = {
        "fleet.yaml": "variables: {}\n",
        f"devices/{DEVICE}.yaml": "stacks: [plant]\n",
        "stacks/plant/compose.yaml": yaml.safe_dump({"services": services}),
        "stacks/plant/stack.yaml": "healthTimeout: 10s\n",
    }
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    sh("git", "add", "--all", cwd=repo)
    sh("git", "commit", "--quiet", "-m", "bench fleet", cwd=repo)


def mib(path: Path) -> str:
    return f"{path.stat().st_size / 1024 / 1024:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--payload", type=int, default=8, help="MiB per image (default 8)")
    args = parser.parse_args()
    images: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as tmp:
        work = Path(tmp)
        try:
            run(work, images, args.payload)
        finally:
            ids = sh("docker", "ps", "-aq", "--filter", f"label=io.fleetgate.device={DEVICE}")
            if ids.split():
                sh("docker", "rm", "-f", *ids.split())
            for image in images:
                subprocess.run(["docker", "rmi", "-f", image], capture_output=True, check=False)


def run(work: Path, images: list[str], payload: int) -> None:
    repo = work / "fleet"
    repo.mkdir()
    sh("git", "init", "--quiet", "-b", "main", cwd=repo)
    key = work / "release"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "release", "-f", str(key))
    allowed = work / "allowed_signers"
    allowed.write_text(f"release@plant.example {key.with_suffix('.pub').read_text()}")
    started = time.monotonic()
    images += [build(work, name, payload) for name in NAMES]
    print(f"built {len(images)} stand-in images ({payload} MiB payload each) in "
          f"{time.monotonic() - started:.1f}s")  # fmt: skip
    fleet(repo, images)
    full, delta = work / "full.fgb", work / "delta.fgb"
    common = ["--repo", str(repo), "--ref", "main", "--sign-key", str(key), "--images"]
    took = fleetgate("bundle", "create", *common, "--device", DEVICE, "--out", str(full))
    print(f"full bundle:  {mib(full):>10}  created in {took:.1f}s")
    images[0] = build(work, NAMES[0] + "-v2", payload)
    fleet(repo, images)
    took = fleetgate("bundle", "create", *common, "--since", str(full), "--out", str(delta))
    print(f"delta bundle: {mib(delta):>10}  created in {took:.1f}s (one image changed)")
    for image in images:
        sh("docker", "rmi", "-f", image)
    state = work / "state"
    took = fleetgate("bundle", "import", str(full), "--state-dir", str(state),
                     "--allowed-signers", str(allowed), "--device", DEVICE)  # fmt: skip
    print(f"import full (verify + docker load of 8 images): {took:.1f}s")
    took2 = fleetgate("bundle", "import", str(delta), "--state-dir", str(state),
                      "--allowed-signers", str(allowed), "--device", DEVICE)  # fmt: skip
    print(f"import delta (its one new layer; the others are in the engine): {took2:.1f}s")
    took3 = fleetgate("apply", "--repo", str(repo), "--device", DEVICE, "--state-dir", str(state))
    print(f"converge (apply: 8 containers created, started, health gate): {took3:.1f}s")
    print(f"stick -> running (import full + delta + converge): {took + took2 + took3:.1f}s")


if __name__ == "__main__":
    main()
