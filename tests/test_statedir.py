"""Safe paths under the state directory: planted symlinks are refused, never followed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import structlog
from fakes import DEVICE, FakeRuntime, desired, service, stack
from structlog.testing import capture_logs
from structlog.typing import FilteringBoundLogger

from reconciler import statedir
from reconciler.engine.apply import apply
from reconciler.errors import EngineError, PlantedLink
from reconciler.model import ConfigFile, Mount, ServiceSpec
from reconciler.plan.planner import EnsureDirectory, MaterializeConfig, Plan, plan
from reconciler.record import DeviceRecord
from reconciler.store import StateStore, write_atomic

LEVELS = ["data", "data/dev1", "data/dev1/line", "data/dev1/line/db", "data/dev1/line/db/sub"]
"""Every component of a data directory below the state directory."""


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A state directory and, outside it, a host directory holding a canary file."""
    state, host = tmp_path / "state", tmp_path / "host"
    host.mkdir()
    (host / "canary").write_text("host secret\n")
    state.mkdir()
    return state, host


def plant(state: Path, level: str, target: Path | str) -> Path:
    """Make every component above ``level`` a real directory and ``level`` itself a link."""
    link = state / level
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


class TestStateRoot:
    def test_the_layout_gives_the_state_directory(self) -> None:
        """Data, lock and config paths name the state directory render put them under."""
        assert statedir.state_root("/s/t/data/dev1/line/db/x", "data") == "/s/t"
        assert statedir.state_root("/s/t/locks/dev1/line", "lock") == "/s/t"
        assert statedir.state_root("/s/t/configs/dev1/line/ab12/app.conf", "config") == "/s/t"

    def test_the_shortest_prefix_wins(self) -> None:
        """A data path inside a data path is walked from the outer root (longer walk, safe)."""
        path = "/v/data/dev1/line/data/dev1/line/x"
        assert statedir.state_root(path, "data", "dev1", "line") == "/v"

    def test_an_unknown_layout_is_walked_from_the_filesystem_root(self) -> None:
        """A path that does not follow the layout gets the strictest root, ``/``."""
        assert statedir.state_root("/srv/whatever", "data") == "/"
        assert statedir.state_root("/s/data/dev1/line", "state") == "/"


class TestFindLink:
    @pytest.mark.parametrize("level", LEVELS)
    def test_a_link_at_any_level_is_found(self, layout: tuple[Path, Path], level: str) -> None:
        """A symlink at any component below the state directory is reported with its target."""
        state, host = layout
        link = plant(state, level, host)
        found = statedir.find_link(str(state), str(state / "data/dev1/line/db/sub"))
        assert found == (str(link), str(host))

    def test_a_dangling_link_is_found(self, layout: tuple[Path, Path]) -> None:
        """A link whose target does not exist is still a link."""
        state, _ = layout
        plant(state, "data/dev1/line/db", "/nonexistent/fleetgate")
        assert statedir.find_link(str(state), str(state / "data/dev1/line/db"))

    def test_a_link_back_inside_the_state_directory_is_found(
        self, layout: tuple[Path, Path]
    ) -> None:
        """A link to elsewhere under the state directory counts too (nothing is followed)."""
        state, _ = layout
        (state / "data/dev1/other").mkdir(parents=True)
        plant(state, "data/dev1/line", state / "data/dev1/other")
        assert statedir.find_link(str(state), str(state / "data/dev1/line/db"))

    def test_a_link_above_the_state_directory_is_trusted(self, tmp_path: Path) -> None:
        """The state directory may itself sit behind a link an administrator made."""
        real = tmp_path / "real"
        (real / "data/dev1/line/db").mkdir(parents=True)
        (tmp_path / "alias").symlink_to(real)
        state = tmp_path / "alias"
        assert statedir.find_link(str(state), str(state / "data/dev1/line/db")) is None

    def test_a_missing_path_has_no_link(self, layout: tuple[Path, Path]) -> None:
        """Nothing below a missing component can be a link."""
        state, _ = layout
        assert statedir.find_link(str(state), str(state / "data/dev1/line/db")) is None


class TestEnsureDir:
    @pytest.mark.parametrize("level", LEVELS[:-1])
    def test_mkdir_refuses_a_link_and_creates_nothing_through_it(
        self, layout: tuple[Path, Path], level: str
    ) -> None:
        """``mkdir -p`` stops at a planted link: nothing is created in the host directory."""
        state, host = layout
        plant(state, level, host)
        with pytest.raises(PlantedLink, match="contains a symlink"):
            statedir.ensure_dir(str(state / "data/dev1/line/db/new"), "data")
        assert sorted(p.name for p in host.iterdir()) == ["canary"]

    def test_mkdir_refuses_a_dangling_link(self, layout: tuple[Path, Path], tmp_path: Path) -> None:
        """A dangling link is not replaced by a directory, nor is its target created."""
        state, _ = layout
        plant(state, "data/dev1/line/db", tmp_path / "would-be-created")
        with pytest.raises(PlantedLink):
            statedir.ensure_dir(str(state / "data/dev1/line/db"), "data")
        assert not (tmp_path / "would-be-created").exists()

    def test_mkdir_creates_every_missing_directory(self, tmp_path: Path) -> None:
        """Without links the walk is ``mkdir -p``, state directory included."""
        path = tmp_path / "state/data/dev1/line/db/a/b"
        statedir.ensure_dir(str(path), "data")
        assert path.is_dir()


class TestWriteAtomic:
    def test_a_link_in_place_of_the_file_is_replaced_not_followed(
        self, layout: tuple[Path, Path]
    ) -> None:
        """A link planted as the file itself is replaced; the file it pointed at is untouched."""
        state, host = layout
        (state / "devices/dev1").mkdir(parents=True)
        (state / "devices/dev1/state.json").symlink_to(host / "canary")
        write_atomic(state / "devices/dev1/state.json", b"{}", mode=0o600, root=state)
        assert (host / "canary").read_text() == "host secret\n"
        assert not (state / "devices/dev1/state.json").is_symlink()
        assert (state / "devices/dev1/state.json").read_bytes() == b"{}"

    def test_a_link_on_a_directory_refuses_the_write(self, layout: tuple[Path, Path]) -> None:
        """A linked directory between the state directory and the file refuses the write."""
        state, host = layout
        plant(state, "devices", host)
        with pytest.raises(PlantedLink):
            write_atomic(state / "devices/dev1/state.json", b"{}", root=state)
        assert sorted(p.name for p in host.iterdir()) == ["canary"]

    def test_the_store_never_writes_through_a_planted_link(self, layout: tuple[Path, Path]) -> None:
        """``StateStore.save`` refuses a linked device folder; the host keeps only its canary."""
        state, host = layout
        plant(state, "devices/dev1", host)
        with pytest.raises(PlantedLink):
            StateStore(state, "dev1").save(DeviceRecord("dev1"))
        assert sorted(p.name for p in host.iterdir()) == ["canary"]


class TestMessages:
    def test_the_refusal_names_path_owner_link_and_what_to_do(
        self, layout: tuple[Path, Path]
    ) -> None:
        """One line: the data directory, its service, the link and its target, and the fix."""
        state, _ = layout
        source = state / "data/dev1/line/db/sub"
        plant(state, "data/dev1/line/db/sub", "/")
        spec = ServiceSpec(
            "dev1", "line", "web", "line-web", "x", mounts=(Mount("data", str(source), "/x"),)
        )
        with pytest.raises(PlantedLink) as caught:
            statedir.check_binds(spec)
        assert str(caught.value) == (
            f"data directory {source} of line/web is a symlink (-> /) "
            "that a container planted; remove it "
            "(fleetgate never follows links under its state directory)"
        )
        assert isinstance(caught.value, EngineError)

    def test_control_characters_in_a_link_target_are_escaped(
        self, layout: tuple[Path, Path]
    ) -> None:
        """A container chooses the link target: its control characters never reach output."""
        state, _ = layout
        plant(state, "data/dev1/line/db", "/x\x1b[31m\nfake")
        with pytest.raises(PlantedLink) as caught:
            statedir.check_path(str(state / "data/dev1/line/db"), "data")
        assert "\x1b" not in str(caught.value) and "\n" not in str(caught.value)
        assert "\\x1b" in str(caught.value)


class TestApplyRefuses:
    def test_a_planted_bind_source_stops_the_plan_before_its_first_step(
        self, layout: tuple[Path, Path]
    ) -> None:
        """A plan that would mount a linked data path does nothing at all, not even a pull."""
        state, host = layout
        source = state / f"data/{DEVICE}/line/db/sub"
        plant(state, f"data/{DEVICE}/line/db/sub", host)
        web = service("line", "web", mounts=(Mount("data", str(source), "/x"),))
        target = desired(stack("line", web, data_dirs=(str(source),)))
        rt = FakeRuntime()
        steps = plan(target, rt.observe(DEVICE), existing_paths=frozenset())
        assert steps.steps[0].kind == "pull"
        with capture_logs(), pytest.raises(PlantedLink, match="line/web"):
            apply(steps, rt, _NoConfigs(), _log())
        assert rt.calls == []
        assert sorted(p.name for p in host.iterdir()) == ["canary"]

    def test_materialize_refuses_a_linked_config_directory(self, layout: tuple[Path, Path]) -> None:
        """A config directory a ``:rw`` container replaced by a link is never written into."""
        state, host = layout
        plant(state, f"configs/{DEVICE}/line", host)
        cfg = statedir_config(state)
        with capture_logs(), pytest.raises(PlantedLink, match="config path"):
            apply(Plan((cfg,)), FakeRuntime(), _NoConfigs(), _log())
        assert sorted(p.name for p in host.iterdir()) == ["canary"]


def statedir_config(state: Path) -> MaterializeConfig:
    """A config file step whose host path follows the state directory layout."""
    digest = "sha256:" + hashlib.sha256(b"x").hexdigest()
    host_path = state / f"configs/{DEVICE}/line/{digest[7:23]}/app.conf"
    return MaterializeConfig(ConfigFile("stacks/line/app.conf", str(host_path), digest), "t")


class _NoConfigs:
    def read_bytes(self, relpath: str) -> bytes:
        return b"x"


def _log() -> FilteringBoundLogger:
    logger: FilteringBoundLogger = structlog.get_logger()
    return logger


class TestHostErrors:
    def test_a_file_in_place_of_a_data_directory_is_one_engine_error(
        self, layout: tuple[Path, Path]
    ) -> None:
        """A file where a data directory belongs stops the pass with one line, not a traceback."""
        state, _ = layout
        blocker = state / f"data/{DEVICE}/line"
        blocker.parent.mkdir(parents=True)
        blocker.write_text("not a directory\n")
        step = EnsureDirectory(str(blocker / "db"), "data", "stack line")
        with (
            capture_logs(),
            pytest.raises(EngineError, match=r"creating data directory \S+/db failed"),
        ):
            apply(Plan((step,)), FakeRuntime(), _NoConfigs(), _log())


class TestCheckStarted:
    def test_only_layout_binds_are_checked_and_a_link_among_them_refuses(
        self, layout: tuple[Path, Path]
    ) -> None:
        """Named volumes and host paths pass; a linked data source of the stack is refused."""
        state, host = layout
        plant(state, "data/dev1/line/db", host)
        fine = ["appdata:/data", f"{host}:/host:ro", f"{state}/data/dev1/other/x:/o"]
        statedir.check_started(fine, "dev1", "line", "web")
        with pytest.raises(PlantedLink, match="of line/web is a symlink"):
            statedir.check_started(
                [*fine, f"{state}/data/dev1/line/db:/db:rw"], "dev1", "line", "web"
            )
