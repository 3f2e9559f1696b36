"""DockerEngine.pull against a real loopback registry."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import docker
import pytest
from support.registry import Registry, free_port

from reconciler.engine.docker import DockerEngine, one_line
from reconciler.errors import ImageUnavailable


def _absent(client: docker.DockerClient, ref: str) -> None:
    """Drop the local tag ``ref`` so a pull must fetch it."""
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(ref)


@pytest.mark.docker
class TestPull:
    def test_pull_tag_from_registry_reports_progress(
        self, registry: Registry, busybox_image: str, docker_client: docker.DockerClient
    ) -> None:
        """A tag in the registry is pulled and progress is reported per layer and at the end."""
        ref = registry.push(busybox_image, "edge/pull-tag:1.0")
        _absent(docker_client, ref)
        events: list[tuple[str, Mapping[str, object]]] = []
        DockerEngine().pull(ref, None, lambda name, fields: events.append((name, fields)))
        assert ref in docker_client.images.get(ref).tags
        names = [name for name, _ in events]
        assert "pull.layer" in names
        assert names[-1] == "pull.done"
        assert events[-1][1]["image"] == ref

    def test_pull_by_digest(
        self, registry: Registry, busybox_image: str, docker_client: docker.DockerClient
    ) -> None:
        """A digest-pinned reference repo@sha256:... is pulled and resolves locally."""
        ref = registry.push(busybox_image, "edge/pull-digest:1.0")
        pinned = registry.digest("edge/pull-digest:1.0")
        _absent(docker_client, ref)
        DockerEngine().pull(pinned, None, None)
        assert pinned in docker_client.images.get(pinned).attrs["RepoDigests"]

    def test_missing_image_is_unavailable(self, registry: Registry) -> None:
        """A tag the registry does not have raises ImageUnavailable naming the image."""
        ref = registry.ref("edge/does-not-exist:9.9")
        with pytest.raises(ImageUnavailable, match="does-not-exist") as err:
            DockerEngine().pull(ref, None, None)
        assert "\n" not in str(err.value)

    def test_unreachable_registry_is_unavailable(self) -> None:
        """A registry nobody listens on raises ImageUnavailable, not a docker exception."""
        ref = f"127.0.0.1:{free_port()}/edge/app:1.0"
        with pytest.raises(ImageUnavailable, match="could not be pulled"):
            DockerEngine().pull(ref, None, None)


class TestErrorText:
    def test_credentials_and_newlines_removed(self) -> None:
        """Engine error text is one line and credentials in URLs are masked."""
        text = one_line("Get https://bot:s3cret@reg.example/v2/: dial tcp\nconnection refused")
        assert "s3cret" not in text
        assert "\n" not in text
        assert "reg.example" in text
