"""A site registry mirror: Debian's ``docker-registry`` as a pull-through cache.

Two registries of the test's own on loopback: the "upstream" (the central registry the
site's link reaches) and the site "mirror" (``proxy: remoteurl:`` the upstream). Devices
reference images by the mirror's address (see docs/air-gapped.md: daemon.json
``registry-mirrors`` only applies to docker.io). The first pull through the mirror
fetches from upstream; then upstream is stopped, the image removed from the engine,
and the second pull (the second device's) is served by the mirror alone.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from support.airgap import layered
from support.engine import ImageBuilder
from support.registry import _answers, free_port
from support.wait import wait_for

from reconciler.engine.docker import DockerEngine

pytestmark = pytest.mark.docker

CONFIG = """\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: {addr}
{proxy}"""


class Served:
    def __init__(self, root: Path, upstream: str | None = None) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            pytest.fail("`docker-registry` not found; install Debian's docker-registry")
        root.mkdir(parents=True)
        self.addr = f"127.0.0.1:{free_port()}"
        proxy = "" if upstream is None else f"proxy:\n  remoteurl: http://{upstream}\n"
        config = root / "config.yml"
        config.write_text(CONFIG.format(root=root / "storage", addr=self.addr, proxy=proxy))
        self.log = root / "registry.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=out)
        wait_for(lambda: _answers(f"http://{self.addr}/v2/"), timeout=20, what=self.addr)

    def blob_fetches(self) -> int:
        """Blob GETs this registry answered (its request log)."""
        text = self.log.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if "GET /v2/" in line and "/blobs/" in line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[tuple[Served, Served]]:
    upstream = Served(tmp_path / "upstream")
    mirror = Served(tmp_path / "mirror", upstream=upstream.addr)
    try:
        yield upstream, mirror
    finally:
        mirror.stop()
        upstream.stop()


class TestPullThroughMirror:
    def test_second_pull_is_served_by_the_site_mirror(
        self,
        sites: tuple[Served, Served],
        docker_client: docker.DockerClient,
        image_builder: ImageBuilder,
    ) -> None:
        """Pulled once through the mirror, the image is pulled again with upstream down."""
        upstream, mirror = sites
        image = layered(docker_client, image_builder, "ag-mirror")
        name = image.split(":", 1)[0].split("/", 1)[1]
        tag = image.rsplit(":", 1)[1]
        pushed = f"{upstream.addr}/site/{name}"
        via_mirror = f"{mirror.addr}/site/{name}:{tag}"
        docker_client.images.get(image).tag(pushed, tag)
        try:
            for event in docker_client.images.push(pushed, tag, stream=True, decode=True):
                assert "error" not in event, event
            image_id = docker_client.images.get(image).id
            docker_client.images.remove(f"{pushed}:{tag}")
            docker_client.images.remove(image)  # its own layer leaves the engine
            engine = DockerEngine()
            engine.pull(via_mirror, None, None)  # device 1: fetched from upstream, cached
            first = upstream.blob_fetches()
            assert first > 0
            docker_client.images.remove(via_mirror, force=True)
            upstream.stop()
            engine.pull(via_mirror, None, None)  # device 2: upstream is down
            assert docker_client.images.get(via_mirror).id == image_id
            assert upstream.blob_fetches() == first
        finally:
            for ref in (f"{pushed}:{tag}", via_mirror):
                with contextlib.suppress(docker.errors.ImageNotFound):
                    docker_client.images.remove(ref, force=True)
