"""In-memory passes over the ``fleets-apply/basic`` fleet: a Git fleet, a fake runtime, a clock."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from fakes import FakeContainer, FakeRuntime

from reconciler.manifests.tree import RepoTree
from reconciler.plan.steps import TEMP_MARK
from reconciler.reconcile.run import PassResult, reconcile_once
from reconciler.store import StateStore
from support.gitserver import Origin

FIXTURE = Path(__file__).parent.parent / "fixtures" / "fleets-apply" / "basic"


DEVICE = "dev1"


HEALTHY_1S = """\
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
      timeout: 1s
      retries: 2
"""


def broker_on_port(port: int, healthcheck: str = "") -> str:
    """The fleet's ``mqtt`` stack with its broker publishing ``port`` on loopback: the
    update that cannot start when something outside fleetgate holds that port.
    ``healthcheck``: extra service lines (e.g. :data:`HEALTHY_1S`)."""
    return (
        "services:\n"
        "  broker:\n"
        "    image: ${BROKER_IMAGE}\n"
        '    command: ["sleep", "3600"]\n'
        "    init: true\n"
        "    stop_grace_period: 1s\n"
        "    environment:\n"
        "      GREETING: ${GREETING}\n"
        "    networks: [bus]\n"
        f'    ports: ["127.0.0.1:{port}:8080"]\n'
        f"{healthcheck}"
        "networks:\n"
        "  bus: {}\n"
    )


class FleetRepo:
    """A Git repository holding the ``fleets-apply/basic`` fleet for one device."""

    def __init__(self, path: Path, device: str, **variables: str) -> None:
        self.path = path
        self.device = device
        self.origin = Origin(path)
        shutil.copytree(FIXTURE, path, dirs_exist_ok=True)
        (path / "devices" / "DEVICE.yaml").rename(path / "devices" / f"{device}.yaml")
        self.variables: dict[str, str] = yaml.safe_load((path / "fleet.yaml").read_text())[
            "variables"
        ]
        self.variables.update(variables)
        self.head = self.commit("initial fleet")

    def commit(self, message: str = "change", **variables: str) -> str:
        """Set fleet variables (if any), commit everything, return the full SHA."""
        self.variables.update(variables)
        text = yaml.safe_dump({"variables": self.variables}, sort_keys=True)
        self.head = self.origin.commit({"fleet.yaml": text}, message)
        return self.head

    def write(self, relpath: str, text: str) -> None:
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")

    def set_stacks(self, *stacks: str) -> None:
        self.write(f"devices/{self.device}.yaml", yaml.safe_dump({"stacks": list(stacks)}))


@dataclass
class FakeClock:
    """Wall and monotonic time that only move when the code under test sleeps."""

    wall: datetime = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday
    mono: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def now(self) -> datetime:
        return self.wall + timedelta(seconds=self.mono)

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.mono += seconds


class ImageRuntime(FakeRuntime):
    """The fake engine, plus images whose containers crash or turn unhealthy on start."""

    crashing: set[str]
    sick: set[str]

    def __init__(self) -> None:
        super().__init__()
        self.crashing = set()
        self.sick = set()

    def start_container(self, container_id: str) -> None:
        super().start_container(container_id)
        c = self._find(container_id)
        if c.image in self.crashing:
            c.state, c.exit_code, c.health = "exited", 3, None
        elif c.image in self.sick:
            c.health = "unhealthy"


def run_pass(
    fleet: FleetRepo,
    runtime: FakeRuntime,
    state_dir: Path,
    **kwargs: object,
) -> PassResult:
    return reconcile_once(
        tree=RepoTree(fleet.path),
        revision=fleet.head,
        device=fleet.device,
        state_dir=state_dir,
        runtime=runtime,
        store=StateStore(state_dir, fleet.device),
        clock=kwargs.pop("clock", FakeClock()),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def running(runtime: FakeRuntime) -> dict[str, FakeContainer]:
    return {c.name: c for c in runtime.containers.values() if c.state == "running"}


def creates(runtime: FakeRuntime) -> list[str]:
    """The services' container names created, a temporary name (create before stop) as its own."""
    return [name.split(TEMP_MARK)[0] for call, name in runtime.calls if call == "create_container"]
