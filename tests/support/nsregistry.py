"""A registry the private engine can pull from: ``docker-registry`` in its network namespace.

The private engine (tests/support/dockerd.py) runs under ``unshare --net``, so the
host's loopback registry is out of its reach. :func:`registry_inside` starts Debian's
``docker-registry`` inside that namespace (``nsenter --net``; the namespace's loopback is
brought up first, it starts down) and yields its address, ``127.0.0.1:PORT`` as the
private engine sees it. :func:`push_bulk` builds an image with one incompressible layer
in the private engine, pushes it there and removes it locally, so a pull must download
it. Nothing of the host's network is touched. Fails (never skips) when a binary is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from support.dockerd import Dockerd
from support.engine import build_image

_CONFIG = """\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:5000
"""


def _need(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        pytest.fail(f"`{binary}` not found on PATH; the image-store fault test needs it")
    return found


@contextlib.contextmanager
def registry_inside(engine: Dockerd, root: Path, timeout: float = 20.0) -> Iterator[str]:
    """``docker-registry`` serving from ``root`` inside ``engine``'s network namespace."""
    assert engine.proc is not None, "the private engine is not running"
    ns = f"--net=/proc/{engine.proc.pid}/ns/net"
    nsenter, binary = _need("nsenter"), _need("docker-registry")
    subprocess.run([nsenter, ns, "--", _need("ip"), "link", "set", "lo", "up"], check=True)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yml").write_text(_CONFIG.format(root=root / "storage"))
    log = root / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [nsenter, ns, "--", binary, "serve", str(root / "config.yml")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        while "listening on" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not start: {log.read_text()[-800:]}")
            time.sleep(0.1)
        yield "127.0.0.1:5000"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def push_bulk(client: docker.DockerClient, base: str, ref: str, mib: int) -> None:
    """Build ``ref``: ``base`` plus ``mib`` MiB of random bytes (``COPY``, no container runs);
    push it and drop it locally, so a pull must download that layer."""
    files = {"bulk": os.urandom(mib * 1024 * 1024)}
    build_image(client, ref, f"FROM {base}\nCOPY bulk /bulk\n", files)
    repo, _, tag = ref.rpartition(":")
    for event in client.images.push(repo, tag, stream=True, decode=True):
        if "error" in event:
            raise AssertionError(f"push of {ref} failed: {event['error']}")
    client.images.remove(ref, force=True)
