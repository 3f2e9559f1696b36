"""Docker test infrastructure: a client that fails loudly, test images, per-run cleanup.

Fixtures (registered by ``tests/conftest.py``):

- ``docker_client`` (session): ``docker.DockerClient``; *fails* the test (never
  skips) when no engine answers. At session end it removes everything this run
  created (see :func:`cleanup_run`) and nothing else.
- ``test_run_id`` (session): short hex id of this pytest run.
- ``test_labels`` (session): ``{"io.fleetgate.test-run": <id>}`` — put it on every
  object a test creates (``ServiceSpec.labels``, ``NetworkSpec.labels``, compose
  ``labels``) so the finalizer finds it.
- ``busybox_image`` (session): tag of a ``FROM scratch`` + static busybox image,
  ``fleetgate-test/busybox:<run>`` (``CMD ["sh"]``).
- ``image_builder`` (session): :class:`ImageBuilder`; ``build(name, dockerfile)``
  gives ``fleetgate-test/<name>:<run>``; ``{base}`` in the Dockerfile is replaced by
  the busybox tag, e.g. ``FROM {base}\\nCMD ["sh", "-c", "exit 3"]``.
- ``device_id`` (function): a unique device id per test
  (``fgt-<run>-<n>``) so simulated devices share one engine; managed objects of that
  device are removed after the test when the test used Docker.

Ownership rule: an object belongs to this run when it carries
``io.fleetgate.test-run=<run>``, or it is fleetgate-managed for a device whose id
starts with ``fgt-<run>-``, or it is a compose object of a project starting with
``fgt-<run>``, or it is an image tagged ``fleetgate-test/*:<run>``.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import secrets
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

TEST_RUN_LABEL = "io.fleetgate.test-run"
IMAGE_REPO_PREFIX = "fleetgate-test/"
BUSYBOX_PATH = Path("/bin/busybox")
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
MANAGED_LABEL = "io.fleetgate.managed"
DEVICE_LABEL = "io.fleetgate.device"

RUN_ID = secrets.token_hex(3)
"""This pytest process's run id; also the image tag and the device/project prefix.

Each pytest-xdist worker is a process of its own and so a run of its own: its objects,
images and cleanup never touch another worker's."""

BUSYBOX_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["sh"]
"""

_DOCKER_HINT = (
    "no Docker engine answers at DOCKER_HOST / /var/run/docker.sock; "
    "start one with `(dockerd >/tmp/dockerd.log 2>&1 &)` (CI: .ci/run does it)"
)

_device_counter = itertools.count(1)


def device_prefix(run_id: str = RUN_ID) -> str:
    """Prefix of every device id and compose project this run uses."""
    return f"fgt-{run_id}-"


def build_image(
    client: docker.DockerClient,
    tag: str,
    dockerfile: str,
    files: Mapping[str, bytes] | None = None,
    run_id: str = RUN_ID,
    *,
    platform: str | None = None,
) -> str:
    """Build ``dockerfile`` with the static busybox (as ``busybox``) and ``files`` in context.

    The image carries the test-run label; ``platform`` (e.g. ``linux/arm64``) builds for
    another architecture (a ``FROM scratch`` image needs no emulation). Returns the image
    id. Raises
    ``AssertionError`` with the build log tail when the build fails.
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        entries = {"Dockerfile": dockerfile.encode(), "busybox": BUSYBOX_PATH.read_bytes()}
        entries.update(files or {})
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    try:
        image, _ = client.images.build(
            fileobj=buf,
            custom_context=True,
            tag=tag,
            labels={TEST_RUN_LABEL: run_id},
            rm=True,
            forcerm=True,
            platform=platform,
        )
    except docker.errors.BuildError as e:
        tail = "".join(str(chunk.get("stream", chunk)) for chunk in list(e.build_log)[-5:])
        raise AssertionError(f"building test image {tag} failed: {e.msg}\n{tail}") from e
    return str(image.id)


class ImageBuilder:
    """Builds variant test images on top of the busybox base image, tagged per run."""

    def __init__(self, client: docker.DockerClient, base: str, run_id: str = RUN_ID) -> None:
        self.client = client
        self.base = base
        self.run_id = run_id

    def tag(self, name: str) -> str:
        """The tag ``build(name, ...)`` gives: ``fleetgate-test/<name>:<run>``."""
        return f"{IMAGE_REPO_PREFIX}{name}:{self.run_id}"

    def build(
        self,
        name: str,
        dockerfile: str,
        files: Mapping[str, bytes] | None = None,
        platform: str | None = None,
    ) -> str:
        """Build and return the tag; ``{base}`` in ``dockerfile`` is the busybox image."""
        tag = self.tag(name)
        text = dockerfile.replace("{base}", self.base)
        build_image(self.client, tag, text, files, self.run_id, platform=platform)
        return tag


def owned(labels: Mapping[str, str] | None, run_id: str) -> bool:
    labels = labels or {}
    prefix = device_prefix(run_id)
    return (
        labels.get(TEST_RUN_LABEL) == run_id
        or (labels.get(MANAGED_LABEL) == "true" and labels.get(DEVICE_LABEL, "").startswith(prefix))
        or labels.get(COMPOSE_PROJECT_LABEL, "").startswith(prefix)
    )


def _labels(attrs: Mapping[str, Any], *path: str) -> Mapping[str, str]:
    node: Any = attrs
    for key in path:
        node = (node or {}).get(key)
    return node or {}


def cleanup_run(
    client: docker.DockerClient, run_id: str = RUN_ID, device: str | None = None
) -> None:
    """Remove containers, networks, volumes and images this run created; nothing else.

    With ``device``, only that device's objects are removed: fleetgate-managed ones of the
    device and of ids derived from it (``<device>-b``), and objects carrying this run's
    label whose name starts with the device id (a test's foreign network
    ``<device>_edge_taken``). Without the latter, such objects stayed until the end of the
    session and took the engine's address pools. Objects that vanish meanwhile are ignored.
    """

    named = (f"{device}_", f"{device}-")

    def mine(labels: Mapping[str, str], name: str) -> bool:
        if device is None:
            return owned(labels, run_id)
        of_device = labels.get(DEVICE_LABEL, "")
        return (
            labels.get(MANAGED_LABEL) == "true"
            and (of_device == device or of_device.startswith(f"{device}-"))
        ) or (labels.get(TEST_RUN_LABEL) == run_id and name.startswith(named))

    for c in client.containers.list(all=True, sparse=True):
        name = (c.attrs.get("Names") or [""])[0].lstrip("/")
        if mine(c.attrs.get("Labels") or {}, name):
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(c.id, force=True, v=True)
    for n in client.networks.list():
        if mine(_labels(n.attrs, "Labels"), n.name or ""):
            with contextlib.suppress(docker.errors.NotFound):
                n.remove()
    for v in client.volumes.list():
        if mine(_labels(v.attrs, "Labels"), v.name or ""):
            with contextlib.suppress(docker.errors.NotFound):
                v.remove()
    if device is not None:
        return
    for image in client.images.list():
        labelled = _labels(image.attrs, "Config", "Labels").get(TEST_RUN_LABEL) == run_id
        refs = [
            t for t in image.tags if t.startswith(IMAGE_REPO_PREFIX) and t.endswith(f":{run_id}")
        ]
        if labelled:  # every tag and digest reference (pulled by digest: no tag at all)
            refs = [*image.tags, *(image.attrs.get("RepoDigests") or ())] or [image.id]
            # no reference at all: a tag that moved to a newer build left it dangling
        for ref in refs:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(ref, noprune=False)


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def test_run_id() -> str:
    """Short hex id of this pytest run."""
    return RUN_ID


@pytest.fixture(scope="session")
def test_labels(test_run_id: str) -> dict[str, str]:
    """The label every test-created Docker object carries."""
    return {TEST_RUN_LABEL: test_run_id}


@pytest.fixture(scope="session")
def docker_client(test_run_id: str) -> Iterator[docker.DockerClient]:
    """A client for the local engine; fails (never skips) when none answers."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as e:  # any failure to reach the engine means the same to the tester
        pytest.fail(f"{_DOCKER_HINT} ({type(e).__name__}: {e})", pytrace=False)
    try:
        yield client
    finally:
        cleanup_run(client, test_run_id)
        client.close()


@pytest.fixture(scope="session")
def busybox_image(docker_client: docker.DockerClient, test_run_id: str) -> str:
    """Tag of the ``FROM scratch`` static-busybox image (``CMD ["sh"]``) for this run."""
    tag = f"{IMAGE_REPO_PREFIX}busybox:{test_run_id}"
    build_image(docker_client, tag, BUSYBOX_DOCKERFILE, run_id=test_run_id)
    return tag


@pytest.fixture(scope="session")
def image_builder(
    docker_client: docker.DockerClient, busybox_image: str, test_run_id: str
) -> ImageBuilder:
    """Builds variant images (crashing CMD, failing HEALTHCHECK, ...) on the busybox base."""
    return ImageBuilder(docker_client, busybox_image, test_run_id)


@pytest.fixture
def device_id(request: pytest.FixtureRequest, test_run_id: str) -> Iterator[str]:
    """A device id unique to this test; its managed Docker objects are removed afterwards."""
    device = f"{device_prefix(test_run_id)}{next(_device_counter)}"
    yield device
    if "docker_client" in request.fixturenames or request.node.get_closest_marker("docker"):
        cleanup_run(request.getfixturevalue("docker_client"), test_run_id, device=device)


@pytest.fixture(autouse=True)
def _docker_marker(request: pytest.FixtureRequest) -> None:
    """Tests marked ``docker`` get ``docker_client`` and thereby fail when no engine answers."""
    if request.node.get_closest_marker("docker") is not None:
        request.getfixturevalue("docker_client")
