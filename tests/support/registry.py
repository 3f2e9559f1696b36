"""A real image registry on loopback: Debian's ``docker-registry`` (distribution 2.x).

Fixture ``registry`` (session) starts ``docker-registry serve`` on
``127.0.0.1:<free port>`` with a temporary storage directory and yields a
:class:`Registry`; the process is stopped at session end. dockerd treats
``127.0.0.0/8`` registries as insecure (plain HTTP) by default, so no engine
configuration is needed. The fixture *fails* when the binary is missing.

    def test_pull(registry, busybox_image):
        ref = registry.push(busybox_image, "edge/app:1.0")   # "127.0.0.1:PORT/edge/app:1.0"
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from support.wait import wait_for

REGISTRY_BINARY = "docker-registry"

_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: {addr}
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    """A running loopback registry; ``address`` is ``127.0.0.1:PORT``."""

    address: str
    client: docker.DockerClient

    def ref(self, name: str) -> str:
        """The full reference of ``name`` (``repo:tag``) in this registry."""
        return f"{self.address}/{name}"

    def push(self, image: str, ref: str) -> str:
        """Tag local ``image`` as ``<address>/<ref>`` and push it; return the full reference.

        The extra local tag belongs to the image and is removed with it by the run cleanup
        (test images carry the test-run label). Raises ``AssertionError`` on push errors.
        """
        full = self.ref(ref)
        repo, _, tag = full.rpartition(":")
        self.client.images.get(image).tag(repo, tag)
        for event in self.client.images.push(repo, tag, stream=True, decode=True):
            if "error" in event:
                raise AssertionError(f"push of {full} failed: {event['error']}")
        return full

    def digest(self, ref: str) -> str:
        """``repo@sha256:...`` of a pushed ``<address>/<ref>`` as the registry reports it."""
        full = self.ref(ref)
        data = self.client.images.get_registry_data(full)
        repo = full.rpartition(":")[0]
        return f"{repo}@{data.id}"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # loopback only, test-owned
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def registry(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """A fresh loopback registry for this session (fails loudly when the binary is missing)."""
    binary = shutil.which(REGISTRY_BINARY)
    if binary is None:
        pytest.fail(
            f"`{REGISTRY_BINARY}` not found on PATH; install Debian's docker-registry package",
            pytrace=False,
        )
    root: Path = tmp_path_factory.mktemp("registry")
    addr = f"127.0.0.1:{free_port()}"
    config = root / "config.yml"
    config.write_text(_CONFIG.format(root=root / "storage", addr=addr))
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(
                    f"docker-registry exited with {proc.returncode}: "
                    + (root / "registry.log").read_text(errors="replace")[-500:]
                )
            return _answers(f"http://{addr}/v2/")

        wait_for(ready, timeout=20, what=f"docker-registry on {addr}")
        yield Registry(addr, docker_client)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
