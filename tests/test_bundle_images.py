"""Bundles that carry images: create from the local engine, verify every blob, docker load.

Real Docker engine (the shared one; images are tagged ``fleetgate-test/*:<run>``), real
git and ssh-keygen. An image is removed from the engine after the bundle is made, so an
import has to bring it back from the bundle (no registry is reachable from the tests).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import docker
import docker.errors
import pytest
from support.airgap import (
    arm64_image,
    fleet_files,
    image_fleet,
    keypair,
    layered,
    member_names,
    rewrite,
)
from support.cliproc import fleetgate
from support.engine import ImageBuilder

from reconciler.cli.bundle_images import wanted_images
from reconciler.engine.docker import DockerEngine
from reconciler.errors import SourceError
from reconciler.source.bundle import create_bundle, import_bundle, mirror_path
from reconciler.source.bundle_format import MANIFEST
from reconciler.source.bundletar import read_manifest

pytestmark = pytest.mark.docker

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def present(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def imported(cache: Path) -> bool:
    return (mirror_path(cache) / "refs" / "fleetgate" / "imported").exists() or (
        mirror_path(cache) / "packed-refs"
    ).exists()


class Made:
    def __init__(self, tmp_path: Path, client: docker.DockerClient, images: list[str]) -> None:
        self.key, self.allowed = keypair(tmp_path / "keys")
        self.origin = image_fleet(tmp_path / "fleet", "press-01", images, "t")
        self.images = images
        self.client = client
        self.tmp = tmp_path

    def bundle(self, name: str, since: Path | None = None) -> Path:
        out = self.tmp / name
        wanted = wanted_images(self.origin.path, "main", ["press-01"], [])
        previous = None if since is None else read_manifest(since)
        create_bundle(
            self.origin.path, "main", out, NOW, sign_key=self.key, images=wanted,
            since=None if previous is None else previous.revision, previous=previous,
        )  # fmt: skip
        return out

    def load(self, bundle: Path, cache: Path) -> None:
        import_bundle(bundle, cache, self.allowed, NOW, loader=DockerEngine(), device="press-01")


@pytest.fixture
def two(tmp_path: Path, docker_client: docker.DockerClient, image_builder: ImageBuilder) -> Made:
    images = [
        layered(docker_client, image_builder, "ag-a"),
        layered(docker_client, image_builder, "ag-b"),
    ]
    return Made(tmp_path, docker_client, images)


class TestCreate:
    def test_blobs_are_shared_and_bound_to_the_signed_manifest(self, two: Made) -> None:
        """Each blob is one member named by its digest, listed with its size; the shared
        base layer is stored once for both images."""
        bundle = two.bundle("full.fgb")
        manifest = read_manifest(bundle)
        assert [i.ref for i in manifest.images] == sorted(two.images)
        assert all(i.devices == ("press-01",) and i.platform == "linux/amd64"
                   for i in manifest.images)  # fmt: skip
        names = member_names(bundle)
        blobs = [n for n in names if n.startswith("blobs/")]
        assert len(blobs) == len(set(blobs)) == len(manifest.blobs)
        assert {"index.json", "oci-layout", "manifest.json.sig"} <= set(names)
        with tarfile.open(bundle) as tar:
            for name in blobs:
                data = tar.extractfile(name).read()  # type: ignore[union-attr]
                digest = name.rsplit("/", 1)[1]
                assert hashlib.sha256(data).hexdigest() == digest
                assert manifest.blobs[digest] == len(data)
            index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        a, b = (layer_digests(bundle, entry["digest"][7:]) for entry in index["manifests"])
        assert len(a & b) == len(a) - 1 == len(b) - 1  # the busybox base's, shared
        assert len(manifest.blobs) == len(a | b) + 4  # + 2 configs and 2 OCI manifests

    def test_image_missing_from_the_engine_is_one_line(
        self, tmp_path: Path, docker_client: docker.DockerClient
    ) -> None:
        """An image the local engine lacks is refused with the pull command to run."""
        made = Made(tmp_path, docker_client, ["fleetgate-test/never-built:none"])
        with pytest.raises(SourceError, match=r"not in the local engine; pull it first"):
            made.bundle("x.fgb")
        assert not (tmp_path / "x.fgb").exists()

    def test_digest_reference_is_refused(
        self, tmp_path: Path, docker_client: docker.DockerClient
    ) -> None:
        """docker load cannot name an image by digest, so such a reference is refused."""
        made = Made(tmp_path, docker_client, ["fleetgate-test/pinned@sha256:" + "a" * 64])
        with pytest.raises(SourceError, match="a digest reference cannot be carried"):
            made.bundle("x.fgb")

    def test_device_arch_other_than_the_local_image_is_refused(
        self, tmp_path: Path, two: Made
    ) -> None:
        """A device declaring arm64 does not get the engine's amd64 image."""
        two.origin.commit(fleet_files("press-01", two.images, "t", arch="arm64"), "arm64")
        with pytest.raises(
            SourceError, match=r"is linux/amd64, but device press-01 needs linux/arm64"
        ):
            two.bundle("arm.fgb")


def layer_digests(bundle: Path, digest: str) -> set[str]:
    with tarfile.open(bundle) as tar:
        handle = tar.extractfile(f"blobs/sha256/{digest}")
        assert handle is not None
        return {layer["digest"] for layer in json.loads(handle.read())["layers"]}


class TestImport:
    def test_images_come_back_from_the_bundle(self, two: Made, tmp_path: Path) -> None:
        """Removed from the engine, both images are present again after the import."""
        bundle = two.bundle("full.fgb")
        for ref in two.images:
            two.client.images.remove(ref, force=True)
        two.load(bundle, tmp_path / "cache")
        assert all(present(two.client, ref) for ref in two.images)
        assert imported(tmp_path / "cache")

    @pytest.mark.parametrize(
        ("what", "why"),
        [
            ("tampered", "does not match its digest; it was tampered with"),
            ("missing", "lacks blob sha256:"),
            ("extra", "that its signed manifest does not list"),
            ("index", "index.json does not match its signed manifest"),
        ],
    )
    def test_bad_blobs_refuse_the_whole_bundle(
        self, two: Made, tmp_path: Path, what: str, why: str
    ) -> None:
        """A changed, missing or added blob, or a changed index: refused, nothing loaded
        and no revision recorded."""
        bundle = two.bundle("full.fgb")
        layer = max(read_manifest(bundle).blobs.items(), key=lambda kv: kv[1])[0]

        def change(name: str, data: bytes) -> bytes | None:
            if name == f"blobs/sha256/{layer}":
                if what == "tampered":
                    return data[:-1] + bytes([data[-1] ^ 1])
                if what == "missing":
                    return None
            if what == "extra" and name == "oci-layout":
                return data
            if what == "index" and name == "index.json":
                return data.replace(b'"schemaVersion":2', b'"schemaVersion":3')
            return data

        bad = rewrite(bundle, tmp_path / f"{what}.fgb", change)
        if what == "extra":
            with tarfile.open(bad, "a", format=tarfile.USTAR_FORMAT) as tar:
                info = tarfile.TarInfo("blobs/sha256/" + hashlib.sha256(b"x").hexdigest())
                info.size = 1
                tar.addfile(info, io.BytesIO(b"x"))
        for ref in two.images:
            two.client.images.remove(ref, force=True)
        with pytest.raises(SourceError, match=why):
            two.load(bad, tmp_path / "cache")
        assert not any(present(two.client, ref) for ref in two.images)
        assert not imported(tmp_path / "cache")

    def test_wrong_architecture_is_refused_before_loading(
        self, tmp_path: Path, docker_client: docker.DockerClient, image_builder: ImageBuilder
    ) -> None:
        """An arm64 bundle on this amd64 engine: refused, nothing loaded or recorded."""
        ref = arm64_image(image_builder, "ag-arm64")
        made = Made(tmp_path, docker_client, [ref])
        made.origin.commit(fleet_files("press-01", [ref], "t", arch="arm64"), "arm64")
        bundle = made.bundle("arm.fgb")
        docker_client.images.remove(ref, force=True)
        with pytest.raises(SourceError, match="wrong architecture: the images are linux/arm64"):
            made.load(bundle, tmp_path / "cache")
        assert not present(docker_client, ref)
        assert not imported(tmp_path / "cache")

    def test_since_a_previous_bundle_leaves_out_its_layers(
        self, two: Made, tmp_path: Path, image_builder: ImageBuilder
    ) -> None:
        """A delta carries only the new image's own layer (configs and manifests always)
        and loads on an engine that has the previous bundle's layers."""
        first = two.bundle("1.fgb")
        two.load(first, tmp_path / "cache")
        third = layered(two.client, image_builder, "ag-c")
        two.origin.commit(fleet_files("press-01", [*two.images, third], "t"), "third image")
        delta = two.bundle("2.fgb", since=first)
        manifest = read_manifest(delta)
        assert manifest.base == read_manifest(first).revision
        old = read_manifest(first)
        old_layers: set[str] = set()
        for image in old.images:
            old_layers |= {d[7:] for d in layer_digests(first, image.manifest)}
        assert set(manifest.omitted) == old_layers  # every layer of the previous bundle
        new = set(manifest.blobs) - set(old.blobs)
        assert len(new) == 3  # the new image's own layer, its config and OCI manifest
        assert delta.stat().st_size < first.stat().st_size
        two.client.images.remove(third, force=True)
        two.load(delta, tmp_path / "cache")
        assert present(two.client, third)

    def test_bundle_without_images_for_this_device_is_refused(
        self, two: Made, tmp_path: Path
    ) -> None:
        """Images for other devices only: refused with how to make the right one."""
        bundle = two.bundle("full.fgb")
        with pytest.raises(SourceError, match="none for device press-02"):
            import_bundle(bundle, tmp_path / "c", two.allowed, NOW, loader=DockerEngine(),
                          device="press-02")  # fmt: skip
        assert MANIFEST in member_names(bundle)


class TestSelectorOption:
    def test_bad_selector_is_one_usage_line_and_writes_nothing(self, tmp_path: Path) -> None:
        """``bundle create --images --selector site`` (no ``=``): exit 2, one line saying
        how to write it (the same parser and words as ``fleet status``), and no file."""
        origin = image_fleet(tmp_path / "origin", "press-01", ["busybox:x"], "t")
        out = tmp_path / "site.fgb"
        args = ["--repo", str(origin.path), "--ref", "main", "--out", str(out), "--images"]
        args += ["--selector", "site"]
        proc = fleetgate("bundle", "create", *args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == [
            "fleetgate: --selector 'site': write LABEL=VALUE, e.g. site=plant-a"
        ]
        assert not out.exists()
