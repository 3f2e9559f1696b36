"""A private ``dockerd`` for fault tests that kill, restart or starve the engine.

Other tests share the machine's engine, so a test that kills the engine, fills its disk
or restarts it runs its own: a second ``dockerd`` with its own ``--data-root``,
``--exec-root`` (hence its own managed ``containerd``), pid file and Unix socket, and no
host networking changes (``--bridge=none --iptables=false --ip-forward=false``) in a
network namespace of its own (``unshare --net``: in the host's namespace
``--bridge=none`` would delete the shared engine's ``docker0``). Registries and Git
servers on the host's loopback are therefore not reachable from its containers.
Its busybox test image is copied from the shared engine (``docker save | docker load``).
The shared engine is never touched. It fails (never skips) when ``dockerd`` is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest


class Dockerd:
    """One private engine under ``root`` (a short path: the socket path is limited)."""

    def __init__(self, root: Path, data_root: Path | None = None) -> None:
        self.root = root
        self.data_root = data_root or root / "data"
        self.sock = root / "d.sock"
        self.host = f"unix://{self.sock}"
        self.log = root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start ``dockerd`` and wait until it answers; fails the test if it does not."""
        binary = shutil.which("dockerd")
        if binary is None:
            pytest.fail("dockerd is not installed; fault tests need a private engine")
        self.data_root.mkdir(parents=True, exist_ok=True)
        (self.root / "exec").mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.sock.unlink()
        # Its own network namespace: a dockerd started with ``--bridge=none`` deletes the
        # interface ``docker0`` of the namespace it runs in, the shared engine's bridge.
        args = [
            "unshare",
            "--net",
            "--",
            binary,
            f"--data-root={self.data_root}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'd.pid'}",
            f"-H={self.host}",
            "--bridge=none",
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"private dockerd exited: {self.log.read_text()[-1500:]}")
            if self.answers():
                return
            time.sleep(0.1)
        pytest.fail(f"private dockerd did not answer in {timeout}s: {self.log.read_text()[-1500:]}")

    def answers(self) -> bool:
        try:
            client = docker.DockerClient(base_url=self.host, timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False

    def kill(self) -> None:
        """SIGKILL ``dockerd`` and its containerd (container shims live on), like a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        for pid in _pids_under(self.root, "containerd"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._forget_containerd()

    def _forget_containerd(self) -> None:
        """Drop the dead containerd's pid file: unreaped here (no init reaps it), it would
        look alive to the next dockerd, which would then wait for it forever."""
        with contextlib.suppress(FileNotFoundError):
            (self.root / "exec" / "containerd" / "containerd.pid").unlink()

    def power_cut(self) -> None:
        """SIGKILL the engine's whole session: dockerd, its containerd and every shim."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self.proc = None
        for pid in _pids_under(self.root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._forget_containerd()

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=60)

    def load_image(self, shared: docker.DockerClient, tag: str) -> None:
        """Copy ``tag`` from the shared engine into this one, under that very tag.

        ``save(named=True)`` names the archive by the image's *first* tag, which is another
        name once an earlier test tagged the image for a registry; name it explicitly."""
        data = b"".join(shared.images.get(tag).save(named=tag))
        with contextlib.closing(self.client()) as mine:
            mine.images.load(data)

    def close(self) -> None:
        """Remove every container, stop the engine, kill what is left, unmount, delete."""
        if self.proc is not None and self.answers():
            with contextlib.closing(self.client()) as c:
                for ctr in c.containers.list(all=True):
                    with contextlib.suppress(docker.errors.APIError):
                        ctr.remove(force=True, v=True)
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        self.power_cut()
        for mount in reversed(_mounts_under(self.root)):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root)
    with Path("/proc/self/mounts").open(encoding="utf-8") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(prefix)]


def _pids_under(root: Path, program: str = "") -> list[int]:
    """Processes whose command line names ``root`` (containerd and shims of this engine),
    only those running ``program`` when it is given."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if str(root).encode() in b" ".join(argv) and (
                not program or Path(argv[0].decode()).name == program
            ):
                found.append(int(entry.name))
    return [p for p in found if p != os.getpid()]


@contextlib.contextmanager
def private_engine(shared: docker.DockerClient, *images: str) -> Iterator[Dockerd]:
    """A started private engine holding ``images``; torn down afterwards."""
    engine = Dockerd(Path(tempfile.mkdtemp(prefix="fgd-", dir="/tmp")))
    try:
        engine.start()
        for tag in images:
            engine.load_image(shared, tag)
        yield engine
    finally:
        engine.close()
