"""A fleet repository whose one device runs test images, and bundle surgery for tests.

Used by the bundle-with-images tests: :func:`image_fleet` commits a fleet (device
``device`` running ``images`` as services ``s0``, ``s1``, ...), :func:`rewrite` copies a
bundle tar member by member with one member changed or left out (what a tampered or
truncated stick holds).
"""

from __future__ import annotations

import io
import secrets
import subprocess
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import docker
import yaml

from support.engine import ImageBuilder
from support.gitserver import Origin


def keypair(folder: Path) -> tuple[Path, Path]:
    """A release key and an allowed signers file for it: (private key, allowed signers)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "release"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "release", "-f", str(key)],
        check=True,
        timeout=30,
    )
    allowed = folder / "allowed_signers"
    allowed.write_text(f"release@plant.example {key.with_suffix('.pub').read_text()}")
    return key, allowed


def fleet_files(
    device: str, images: Sequence[str], run: str, arch: str | None = None
) -> dict[str, str]:
    services = {
        f"s{n}": {
            "image": image,
            "command": ["sleep", "3600"],
            "init": True,
            "stop_grace_period": "1s",
            "labels": {"io.fleetgate.test-run": run},
        }
        for n, image in enumerate(images)
    }
    spec: dict[str, object] = {"stacks": ["app"]} | ({"arch": arch} if arch else {})
    return {
        "fleet.yaml": "variables: {}\n",
        f"devices/{device}.yaml": yaml.safe_dump(spec),
        "stacks/app/compose.yaml": yaml.safe_dump({"services": services}),
        "stacks/app/stack.yaml": "healthTimeout: 10s\n",
    }


def image_fleet(
    path: Path, device: str, images: Sequence[str], run: str, arch: str | None = None
) -> Origin:
    origin = Origin(path)
    origin.commit(fleet_files(device, images, run, arch), "fleet with images")
    return origin


def layered(client: docker.DockerClient, builder: ImageBuilder, name: str) -> str:
    """A test image with one layer of its own on the busybox base (a fresh tag)."""
    token = secrets.token_hex(4)
    # COPY, not RUN: building needs no container (nor the engine's bridge network).
    return builder.build(f"{name}-{token}", "FROM {base}\nCOPY id /id\n", {"id": token.encode()})


def arm64_image(builder: ImageBuilder, name: str) -> str:
    """An arm64 image (one file, no base) tagged ``builder.tag(name)``; labelled like
    every test image, and its build leaves no intermediate container."""
    dockerfile = 'FROM scratch\nCOPY f /f\nCMD ["/f"]\n'
    return builder.build(name, dockerfile, {"f": b"arm\n"}, platform="linux/arm64")


def remove_image(client: docker.DockerClient, ref: str) -> None:
    """Remove a test image (its own layers go with it)."""
    client.images.remove(ref, force=True)


def rewrite(bundle: Path, out: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy ``bundle`` to ``out``; ``change(name, data)`` gives new data or ``None`` (drop)."""
    with tarfile.open(bundle) as source, tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tar:
        for member in source.getmembers():
            handle = source.extractfile(member)
            assert handle is not None
            data = change(member.name, handle.read())
            if data is None:
                continue
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return out


def member_names(bundle: Path) -> list[str]:
    with tarfile.open(bundle) as tar:
        return tar.getnames()
