"""Bundle images fetched from a registry: a multi-arch reference gives each device its own.

The session's loopback ``docker-registry`` holds an amd64 and an arm64 image under one
tag (a Docker manifest list put through the HTTP API). ``bundle create --images
--from-registry`` for an amd64 and an arm64 device carries one image per platform; the
amd64 device loads its own, the arm64 one is refused on this amd64 engine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml
from support.airgap import arm64_image, keypair, layered
from support.engine import ImageBuilder
from support.gitserver import Origin
from support.registry import Registry

from reconciler.cli.bundle_images import wanted_images
from reconciler.engine.docker import DockerEngine
from reconciler.errors import SourceError
from reconciler.source.bundle import create_bundle, import_bundle
from reconciler.source.bundletar import read_manifest

pytestmark = pytest.mark.docker

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
V2 = "application/vnd.docker.distribution.manifest.v2+json"
LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def _manifest(registry: Registry, repo: str, tag: str) -> tuple[str, int]:
    request = urllib.request.Request(
        f"http://{registry.address}/v2/{repo}/manifests/{tag}", headers={"Accept": V2}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # loopback, test-owned
        data = response.read()
    return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)


def multi_arch(registry: Registry, amd64: str, arm64: str, repo: str) -> str:
    """``repo:multi`` as a manifest list of the two pushed images; its full reference."""
    entries = []
    for image, arch in ((amd64, "amd64"), (arm64, "arm64")):
        registry.push(image, f"{repo}:{arch}")
        digest, size = _manifest(registry, repo, arch)
        entries.append({"mediaType": V2, "digest": digest, "size": size,
                        "platform": {"os": "linux", "architecture": arch}})  # fmt: skip
    body = json.dumps({"schemaVersion": 2, "mediaType": LIST, "manifests": entries}).encode()
    request = urllib.request.Request(
        f"http://{registry.address}/v2/{repo}/manifests/multi",
        data=body,
        method="PUT",
        headers={"Content-Type": LIST},
    )
    with urllib.request.urlopen(request, timeout=10):  # loopback, test-owned
        pass
    return registry.ref(f"{repo}:multi")


class TestFromRegistry:
    def test_multi_arch_reference_resolves_per_device(
        self,
        registry: Registry,
        docker_client: docker.DockerClient,
        image_builder: ImageBuilder,
        test_run_id: str,
        tmp_path: Path,
    ) -> None:
        """Each device gets the platform of its arch; only the engine's own one loads."""
        amd64 = layered(docker_client, image_builder, "ag-reg")
        arm64 = arm64_image(image_builder, "ag-reg-arm64")
        ref = multi_arch(registry, amd64, arm64, f"fleetgate-test/multi-{test_run_id}")
        key, allowed = keypair(tmp_path / "keys")
        compose = {"services": {"app": {"image": ref, "command": ["sleep", "1"]}}}
        origin = Origin(tmp_path / "fleet")
        origin.commit({
            "fleet.yaml": "variables: {}\n",
            "devices/d-amd.yaml": "stacks: [app]\narch: amd64\n",
            "devices/d-arm.yaml": "stacks: [app]\narch: arm64\n",
            "stacks/app/compose.yaml": yaml.safe_dump(compose),
        }, "multi-arch fleet")  # fmt: skip
        out = tmp_path / "multi.fgb"
        wanted = wanted_images(origin.path, "main", [], [])
        create_bundle(origin.path, "main", out, NOW, sign_key=key, images=wanted,
                      from_registry=True)  # fmt: skip
        manifest = read_manifest(out)
        by_device = {i.devices: i.platform for i in manifest.images}
        assert by_device == {("d-amd",): "linux/amd64", ("d-arm",): "linux/arm64"}
        try:
            with pytest.raises(SourceError, match="wrong architecture"):
                import_bundle(out, tmp_path / "c1", allowed, NOW, loader=DockerEngine(),
                              device="d-arm")  # fmt: skip
            with pytest.raises(docker.errors.ImageNotFound):
                docker_client.images.get(ref)
            import_bundle(out, tmp_path / "c2", allowed, NOW, loader=DockerEngine(),
                          device="d-amd")  # fmt: skip
            loaded = docker_client.images.get(ref)
            assert loaded.id == docker_client.images.get(amd64).id
        finally:
            for tag in (ref, registry.ref(f"fleetgate-test/multi-{test_run_id}:amd64"),
                        registry.ref(f"fleetgate-test/multi-{test_run_id}:arm64")):  # fmt: skip
                with contextlib.suppress(docker.errors.ImageNotFound):
                    docker_client.images.remove(tag, force=True)

    def test_reference_without_registry_host_is_one_line(self, tmp_path: Path) -> None:
        """A Docker Hub short name cannot be fetched from a registry here: one line."""
        key, _ = keypair(tmp_path / "keys")
        origin = Origin(tmp_path / "fleet")
        compose = "services:\n  app:\n    image: busybox:1\n"
        origin.commit({"fleet.yaml": "variables: {}\n", "devices/d.yaml": "stacks: [app]\n",
                       "stacks/app/compose.yaml": compose})  # fmt: skip
        wanted = wanted_images(origin.path, "main", [], [])
        with pytest.raises(SourceError, match="names no registry host"):
            create_bundle(origin.path, "main", tmp_path / "x.fgb", NOW, sign_key=key,
                          images=wanted, from_registry=True)  # fmt: skip
