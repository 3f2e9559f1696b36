"""Small tools of ``scripts/demo``: its settings, one-line errors, running commands, waiting."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example-fleet-repo"
FLEETGATE = Path(sys.executable).parent / "fleetgate"
IMAGES = ("fleetgate-demo/sensor:1", "fleetgate-demo/sensor:2", "fleetgate-demo/dashboard:1")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Fleet Engineer",
    "GIT_AUTHOR_EMAIL": "engineer@plant.example",
    "GIT_COMMITTER_NAME": "Fleet Engineer",
    "GIT_COMMITTER_EMAIL": "engineer@plant.example",
    "GIT_CONFIG_NOSYSTEM": "1",  # the user's git settings (signing, hooks) stay out of it
    "GIT_CONFIG_GLOBAL": "/dev/null",
}
POLL = 0.25
T = TypeVar("T")


class DemoError(Exception):
    """A step failed: the message is the one line the user sees."""


@dataclass(frozen=True)
class Settings:
    """Where the demo works; every value can be moved by a FLEETGATE_DEMO_* variable."""

    dir: Path
    device: str
    port: int
    timeout: float
    soak: int = 20  # seconds the lab runs a release healthy before production may follow

    @staticmethod
    def from_env(env: Mapping[str, str]) -> Settings:
        device = env.get("FLEETGATE_DEMO_DEVICE", "demo")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,55}", device):
            raise DemoError(f"FLEETGATE_DEMO_DEVICE={device!r} is not a device id ([a-z0-9-])")
        try:
            port = int(env.get("FLEETGATE_DEMO_PORT", "18080"))
            timeout = float(env.get("FLEETGATE_DEMO_TIMEOUT", "120"))
            soak = int(env.get("FLEETGATE_DEMO_SOAK", "20"))
        except ValueError as e:
            raise DemoError(
                f"FLEETGATE_DEMO_PORT / FLEETGATE_DEMO_TIMEOUT / FLEETGATE_DEMO_SOAK: {e}"
            ) from None
        folder = Path(env.get("FLEETGATE_DEMO_DIR") or ROOT / ".demo").resolve()
        return Settings(folder, device, port, timeout, soak)

    @property
    def state(self) -> Path:
        return self.dir / "state"

    @property
    def served(self) -> Path:
        return self.dir / "git"

    @property
    def repo(self) -> Path:
        return self.served / "fleet"

    @property
    def waves(self) -> Path:
        """The waves part's agents: their configs, logs and state."""
        return self.dir / "waves"

    @property
    def wave_devices(self) -> tuple[str, str, str]:
        """The waves part's devices: the lab, then two production devices."""
        return (f"{self.device}-lab", f"{self.device}-line-1", f"{self.device}-line-2")

    @property
    def run_file(self) -> Path:
        return self.dir / "run.json"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def shown(self, path: Path) -> str:
        """A path as the user would type it (relative to the checkout when inside it)."""
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)


# ------------------------------------------------------------------ small tools


def say(line: str) -> None:
    print(f"==> {line}", flush=True)


def show(text: str, indent: str = "    ") -> None:
    for line in text.rstrip("\n").splitlines():
        print(f"{indent}{line}", flush=True)


def run(
    argv: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise :class:`DemoError` with its last error line."""
    try:
        done = subprocess.run(
            [str(a) for a in argv],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise DemoError(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise DemoError(
            f"{Path(str(argv[0])).name} {argv[1]} took longer than {timeout:g}s"
        ) from None
    if check and done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise DemoError(f"{Path(str(argv[0])).name} {argv[1]} failed: {last}")
    return done


def git(repo: Path, *args: str) -> str:
    return run(["git", *args], cwd=repo, env=GIT_ENV).stdout.strip()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """The first non-None value of ``predicate()``; :class:`DemoError` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise DemoError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL)


def short(revision: str | None) -> str:
    return (revision or "none")[:7]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def edit(text: str, old: str, new: str, path: Path) -> str:
    if old not in text:
        raise DemoError(f"{path}: expected {old.strip()!r} (the example fleet changed?)")
    return text.replace(old, new, 1)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def commit_change(repo: Path, rel: str, old: str, new: str, message: str) -> str:
    """Replace ``old`` by ``new`` in ``repo/rel``, commit everything; the new HEAD."""
    path = repo / rel
    path.write_text(edit(path.read_text(), old, new, path))
    git(repo, "commit", "--quiet", "--all", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def machine_arch() -> str:
    """This machine's architecture as device files say it (the demo images' two)."""
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())
    if arch is None:
        raise DemoError(f"the demo images run on amd64 and arm64, not {platform.machine()}")
    return arch


@dataclass
class Summary:
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, step: str, revision: str, what: str) -> None:
        self.rows.append((step, short(revision), what))

    def print(self, total: float) -> None:
        say(f"summary (the whole demo took {total:.0f}s)")
        width = max(len(r[0]) for r in self.rows)
        for step, rev, what in self.rows:
            print(f"    {step:<{width}}  {rev}  {what}", flush=True)


def pid_alive(pid: int, marker: str) -> bool:
    """``pid`` runs and its command line contains ``marker`` (so never a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def stop_pid(pid: int, marker: str, grace: float = 30.0) -> bool:
    """SIGTERM a process the demo started (checked by ``marker``); SIGKILL after ``grace``.
    True when it was still running."""
    if not pid_alive(pid, marker):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pid_alive(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True
