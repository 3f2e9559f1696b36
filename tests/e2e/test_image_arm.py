"""The ARM images built by ``scripts/image``, run under qemu-user-static.

They are built the same way as the host image (test_image.py), their base without
emulating debootstrap's second stage, and must run the agent on an emulated ARM CPU;
the fixture registers binfmt_misc itself (it needs root, as CI has) and skips only
where that is impossible. A file of its own: a parallel run (pytest-xdist, one file per
worker) builds these while another worker builds the host image.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

ARM = {"linux/arm64": ("arm64", "aarch64"), "linux/arm/v7": ("armv7", "armv7l")}
ARM_NAME = "fleetgate-test/agent-arm"  # not fleetgate:*: the test removes what it built


@pytest.fixture(scope="session")
def binfmt() -> None:
    """qemu-user-static registered in binfmt_misc (done here when it is not: needs root).
    Where binfmt_misc cannot be mounted or written (no root, a locked-down container)
    no ARM binary can run on this machine: the ARM tests are skipped with that reason."""
    subprocess.run(
        [
            "sh",
            "-c",
            "command -v qemu-aarch64-static >/dev/null || "
            "apt-get install -y -qq --no-install-recommends qemu-user-static",
        ],
        check=True,
        timeout=600,
    )
    register = Path("/proc/sys/fs/binfmt_misc/register")
    try:
        if not register.exists():
            subprocess.run(
                ["mount", "-t", "binfmt_misc", "binfmt_misc", str(register.parent)],
                check=True,
                capture_output=True,
                timeout=30,
            )
        for name in ("aarch64", "arm"):
            if not (register.parent / f"qemu-{name}").exists():
                line = Path(f"/usr/lib/binfmt.d/qemu-{name}.conf").read_text().strip()
                with contextlib.suppress(FileExistsError):  # registered under another name
                    register.write_text(line)
    except (OSError, subprocess.CalledProcessError) as e:
        if isinstance(e, OSError) and e.errno not in {errno.EACCES, errno.EPERM, errno.EROFS}:
            raise  # not a locked-down kernel interface: a broken qemu-user-static install
        detail = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) else e
        pytest.skip(f"qemu cannot be registered in binfmt_misc here ({detail!s}): ARM needs it")


@pytest.fixture(scope="class")
def arm_images(binfmt: None, docker_client: docker.DockerClient) -> Iterator[dict[str, str]]:
    """Both ARM images, built fresh by one scripts/image run (from a cached base when
    FLEETGATE_IMAGE_CACHE has one); removed afterwards."""
    proc = subprocess.run(
        [
            str(ROOT / "scripts" / "image"),
            *(a for platform in ARM for a in ("--platform", platform)),
            "--name",
            ARM_NAME,
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    print(f"\nscripts/image:\n{proc.stderr[-2000:]}{proc.stdout}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    tags = {p: f"{ARM_NAME}:{VERSION}-{suffix}" for p, (suffix, _) in ARM.items()}
    yield tags
    for tag in tags.values():
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(tag)


class TestArmImages:
    """The ARM images are built from the same recipe and run on ARM (here: emulated).
    Their base is debootstrap's first stage finished on the host (scripts/image_foreign.py),
    so it is made in about a minute of CPU instead of 19-26 min of emulated second stage."""

    @pytest.mark.parametrize("platform", sorted(ARM))
    def test_arm_image_runs_the_agent(
        self, arm_images: dict[str, str], docker_client: docker.DockerClient, platform: str
    ) -> None:
        """On an ARM CPU (uname -m), the image answers ``fleetgate --version`` and
        ``agent --help``, validates the example fleet, runs git, and its dpkg database
        audits clean."""
        script = (
            "uname -m; fleetgate --version; fleetgate agent --help >/dev/null && echo agent; "
            "fleetgate validate --repo /fleet 2>&1; git --version; dpkg --audit"
        )
        out = docker_client.containers.run(
            arm_images[platform],
            entrypoint=["sh", "-c", script],
            volumes={str(ROOT / "example-fleet-repo"): {"bind": "/fleet", "mode": "ro"}},
            remove=True,
        )
        lines = out.decode().splitlines()
        assert lines[0] == ARM[platform][1]
        assert lines[1:3] == [f"fleetgate {VERSION}", "agent"]
        assert lines[3].startswith("fleet valid: ")
        assert lines[4].startswith("git version 2.")
        assert lines[5:] == []  # dpkg --audit: nothing half-installed
