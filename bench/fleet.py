"""Benchmark the fleet view: 10,000 retained statuses in a local Mosquitto.

Set-up: a Mosquitto on a free 127.0.0.1 port (anonymous, otherwise its default
configuration, in a temporary folder), a fleet folder with ``--devices`` device files
(labels ``site``) and one stack, and one retained status + online message per device
(published by one paho client).

Measured, printed in one run:

1. ``fleetgate fleet status --broker URL --repo DIR --output json`` as a subprocess: wall
   time, CPU (with its workers) and the child's peak RSS (``ru_maxrss``), and that it
   listed every device; first with an empty label cache (every device file parsed), then
   ``--runs`` times with the labels cached (:mod:`reconciler.fleet.labelcache`).
2. ``fleetgate fleet serve``: the latency of ``GET /api/fleet`` (median and max of
   ``--requests`` requests) once the subscription holds every retained message.
3. The page in headless Chromium (Debian ``chromium``): real time from navigation to the
   first table drawn, as the page logs it (``performance.now()``) to the console, read
   from Chromium's log on stderr (``--virtual-time-budget`` would make that clock
   virtual), over three loads.
4. The Git side (:mod:`fleetgit`): ``--polls`` "did the ref move?" polls against
   ``git daemon`` and smart HTTP, server CPU per poll and polls/s per core, next to a
   ``git fetch`` and a fresh clone per poll.

    .venv/bin/python bench/fleet.py [--devices 10000] [--requests 10] [--polls 1000] [--runs 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
from fleetgit import cpu_seconds, git_bench
from paho.mqtt.enums import CallbackAPIVersion

from reconciler.report.status import ServiceStatus, Status

SHA = "d" * 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true"]
    if os.geteuid() == 0:
        lines.append("user root")
    (folder / "m.conf").write_text("\n".join(lines) + "\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(folder / "m.conf")], stderr=subprocess.DEVNULL)
    wait(lambda: socket.create_connection(("127.0.0.1", port), 0.5).close() is None, 10, "broker")
    return proc, port


def fleet_repo(folder: Path, devices: int) -> Path:
    repo = folder / "fleet"
    (repo / "devices").mkdir(parents=True)
    (repo / "stacks/s").mkdir(parents=True)
    (repo / "stacks/s/compose.yaml").write_text("services:\n  x:\n    image: x\n")
    for n in range(devices):
        site = f"site-{n % 40:02d}"
        labels = f"{{site: {site}, serial: sn-{n:05d}}}"  # every file differs, as in a fleet
        (repo / f"devices/dev-{n:05d}.yaml").write_text(f"labels: {labels}\nstacks: [s]\n")
    return repo


def status_payload(device: str, n: int, now: datetime) -> bytes:
    """A realistic report: ``Status.to_json()`` of a device running three services."""
    services = tuple(
        ServiceStatus(
            stack=stack,
            service=stack,
            container=f"{device}_{stack}_{stack}",
            image=f"registry.plant.example/{stack}:2.4.{n % 7}",
            image_digest="sha256:" + "e" * 64,
            state="running",
            health="healthy",
            restart_count=0,
            config_hash="f" * 64,
        )
        for stack in ("node-red", "mqtt-bridge", "opcua-gateway")
    )
    status = Status(
        device,
        desired_revision=SHA,
        applied_revision=SHA,
        last_good_revision=SHA,
        outcome="succeeded" if n % 50 else "rolled-back",
        reason="converged",
        services=services,
        heartbeat_at=now,
        pass_started_at=now,
        pass_finished_at=now,
        observed_at=now,
    )
    return json.dumps(status.to_json(), sort_keys=True).encode()


def seed(port: int, devices: int) -> tuple[float, int]:
    """Publish every device's retained status and presence; (seconds, bytes of a status)."""
    started = time.monotonic()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-seed")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    now = datetime.now(UTC)
    last = None
    size = 0
    for n in range(devices):
        device = f"dev-{n:05d}"
        payload = status_payload(device, n, now)
        size = len(payload)
        client.publish(f"fleetgate/{device}/status", payload, 1, True)
        last = client.publish(f"fleetgate/{device}/online", b"true", 1, True)
    assert last is not None
    last.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()
    return time.monotonic() - started, size


def fleet_status(port: int, repo: Path, devices: int, cache: Path, label: str) -> None:
    """One ``fleet status -o json`` run with ``cache`` as its ``XDG_CACHE_HOME``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "fleet",
            "status",
            "--broker",
            f"mqtt://127.0.0.1:{port}",
            "--repo",
            str(repo),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    rss = after.ru_maxrss / 1024
    if done.returncode != 0:
        raise SystemExit(f"fleet status failed: {done.stderr.strip()}")
    document = json.loads(done.stdout)
    reported = document["summary"]["reported"]
    print(
        f"fleet status ({label}): {wall:.2f} s wall, {cpu:.2f} s CPU (with its workers), "
        f"peak RSS {rss:.0f} MiB, "
        f"{len(document['devices'])} devices, {reported} reported (of {devices})"
    )


def serve(port: int, repo: Path, requests: int) -> None:
    listen = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "fleet",
            "serve",
            "--broker",
            f"mqtt://127.0.0.1:{port}",
            "--repo",
            str(repo),
            "--listen",
            f"127.0.0.1:{listen}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def get() -> tuple[float, dict[str, object]]:
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", listen, timeout=60)
            conn.request("GET", "/api/fleet")
            body = conn.getresponse().read()
            conn.close()
            return time.monotonic() - started, json.loads(body)

        wait(lambda: get()[1]["summary"]["reported"] > 0, 60, "fleet serve")  # type: ignore[index]
        times = [get()[0] for _ in range(requests)]
        print(
            f"/api/fleet: median {statistics.median(times) * 1000:.0f} ms, "
            f"max {max(times) * 1000:.0f} ms over {requests} requests"
        )
        page_render(listen)
    finally:
        proc.terminate()
        proc.wait(10)


def first_table(chromium: str, url: str, profile: str) -> tuple[float, float]:
    """(ms from navigation to the first table as the page logs it, s from Chromium's
    start to that line): real time, read from Chromium's console log on stderr."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--remote-debugging-port=0",  # keeps headless Chromium running on the page
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            found = re.search(r"first table drawn after (\d+) ms", line)
            if found:
                return float(found.group(1)), time.monotonic() - started
            if time.monotonic() - started > 120:
                break
        raise SystemExit("the page never drew its first table")
    finally:
        proc.kill()
        proc.wait(10)


def page_render(listen: int) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("page: chromium is not installed (Debian package chromium); not measured")
        return
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-chromium-") as profile:
        runs = [first_table(chromium, f"http://127.0.0.1:{listen}/", profile) for _ in range(3)]
    shown = ", ".join(f"{ms:.0f} ms" for ms, _ in runs)
    print(
        f"page in Chromium: first table {shown} after navigation (3 loads); "
        f"{min(s for _, s in runs):.2f} s at best from Chromium's start"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--clones", type=int, default=50)
    parser.add_argument("--runs", type=int, default=2, help="fleet status runs, labels cached")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-fleet-") as tmp:
        folder = Path(tmp)
        broker, port = mosquitto(folder)
        try:
            repo = fleet_repo(folder, args.devices)
            cpu = cpu_seconds(broker.pid)[0]
            took, size = seed(port, args.devices)
            cpu = cpu_seconds(broker.pid)[0] - cpu
            print(
                f"seeded {args.devices} retained statuses ({size} B each) + presence in "
                f"{took:.1f} s; broker CPU {cpu:.2f} s = {cpu / args.devices * 1000:.3f} ms "
                "per device's status + online publish (QoS 1, retained)"
            )
            print(f"load average before fleet status: {os.getloadavg()[0]:.1f}")
            cpu = cpu_seconds(broker.pid)[0]
            cache = folder / "cache"  # first run: no labels cached yet; then from the cache
            fleet_status(port, repo, args.devices, cache, "first run, labels parsed")
            cpu = cpu_seconds(broker.pid)[0] - cpu
            print(f"  broker CPU to hand one reader every retained message: {cpu:.2f} s")
            for run in range(args.runs):
                fleet_status(port, repo, args.devices, cache, f"labels cached, run {run + 1}")
            print(f"load average after fleet status: {os.getloadavg()[0]:.1f}")
            serve(port, repo, args.requests)
        finally:
            broker.terminate()
            broker.wait(10)
        git_bench(repo, args.polls, args.clones)
    return 0


if __name__ == "__main__":
    sys.exit(main())
