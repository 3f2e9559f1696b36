"""Agent configuration: file, FLEETGATE_* environment and flags, flags winning (DESIGN §3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler.agent.config import KEYS, env_name, flag_name, load_config
from reconciler.cli import main
from reconciler.errors import UsageError
from reconciler.model import Policy


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return str(path)


def load(config: str | None, env: dict[str, str] | None = None, **flags: Any) -> Any:
    return load_config(config, env or {}, flags, hostname="Edge-01.plant.example")


class TestNames:
    """Every key has an environment variable in upper snake case and a kebab-case flag."""

    def test_spelling(self) -> None:
        """stateDir is FLEETGATE_STATE_DIR and --state-dir."""
        assert env_name("stateDir") == "FLEETGATE_STATE_DIR"
        assert flag_name("stateDir") == "--state-dir"
        assert env_name("allowedSigners") == "FLEETGATE_ALLOWED_SIGNERS"
        assert flag_name("pollInterval") == "--poll-interval"

    def test_every_key_is_a_flag_of_the_command(self) -> None:
        """`fleetgate agent --help` lists a flag for every configuration key."""
        out = subprocess.run(
            [sys.executable, "-m", "reconciler", "agent", "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for key in KEYS:
            assert flag_name(key) in out


class TestDefaults:
    """Without a file, only the repository is needed."""

    def test_defaults(self, tmp_path: Path) -> None:
        """Device defaults to the host name; the rest to DESIGN's defaults."""
        cfg = load(None, repo="git://fleet/x")
        assert cfg.device == "edge-01"
        assert cfg.state_dir == Path("/var/lib/fleetgate")
        assert cfg.status_listen == "127.0.0.1:9180"
        assert cfg.poll_interval == 60.0
        assert cfg.max_defer == 4 * 3600.0
        assert cfg.repair_drift is True
        assert cfg.policy is None

    def test_missing_repo_is_one_line(self) -> None:
        """No repository anywhere names all three ways to set it."""
        with pytest.raises(UsageError, match="FLEETGATE_REPO or --repo"):
            load(None)

    def test_missing_explicit_config_is_an_error(self, tmp_path: Path) -> None:
        """An explicit --config that does not exist is refused."""
        with pytest.raises(UsageError, match="no such configuration file"):
            load(str(tmp_path / "nope.yaml"), repo="x")


class TestPrecedence:
    """Flags win over the environment, which wins over the file."""

    def test_flag_over_env_over_file(self, tmp_path: Path) -> None:
        """Each layer overrides only the keys it sets."""
        path = write(
            tmp_path,
            "device: from-file\nrepo: /srv/fleet\npollInterval: 30s\nstateDir: /data/fg\n",
        )
        env = {"FLEETGATE_POLL_INTERVAL": "20s", "FLEETGATE_DEVICE": "from-env"}
        cfg = load(path, env, device="from-flag")
        assert cfg.device == "from-flag"
        assert cfg.poll_interval == 20.0
        assert cfg.state_dir == Path("/data/fg")
        assert cfg.repo == "/srv/fleet"

    def test_list_bool_and_policy_from_text(self, tmp_path: Path) -> None:
        """watch is comma-separated, repairDrift a boolean, policy an inline mapping."""
        env = {
            "FLEETGATE_WATCH": "/media/usb, /srv/bundles",
            "FLEETGATE_ALLOWED_SIGNERS": "/etc/fleetgate/allowed_signers",
            "FLEETGATE_REPAIR_DRIFT": "false",
            "FLEETGATE_ALLOW_REWIND": "yes",
            "FLEETGATE_POLICY": "{registries: [registry.plant.example], privileged: false}",
        }
        assert load(None, env, repo="x").watch == (Path("/media/usb"), Path("/srv/bundles"))
        cfg = load(None, env, repo="x", watch=["/mnt/a"])
        assert cfg.watch == (Path("/mnt/a"),)
        assert cfg.repair_drift is False
        assert cfg.allow_rewind is True
        assert cfg.policy == Policy(registries=("registry.plant.example",))

    def test_file_policy_and_durations(self, tmp_path: Path) -> None:
        """A policy in the file narrows; durations are Compose durations."""
        path = write(
            tmp_path,
            "repo: x\npolicy:\n  hostPaths: [/var/lib/plc]\nhealthTimeout: 1m30s\nmaxDefer: 2h\n",
        )
        cfg = load(path)
        assert cfg.policy == Policy(host_paths=("/var/lib/plc",))
        assert cfg.health_timeout == 90.0
        assert cfg.max_defer == 7200.0


class TestSourceSecurity:
    """Anti-rollback is on unless allowRewind says otherwise; bundles need allowedSigners."""

    def test_allow_rewind_defaults_to_false(self) -> None:
        """Without allowRewind the tracked ref may only move forward."""
        assert load(None, repo="x").allow_rewind is False

    def test_allow_rewind_from_file_env_and_flag(self, tmp_path: Path) -> None:
        """allowRewind is a boolean in the file and true/false text elsewhere, flags winning."""
        path = write(tmp_path, "repo: x\nallowRewind: true\n")
        assert load(path).allow_rewind is True
        assert load(path, {"FLEETGATE_ALLOW_REWIND": "false"}).allow_rewind is False
        env = {"FLEETGATE_ALLOW_REWIND": "false"}
        assert load(path, env, allowRewind="true").allow_rewind is True

    def test_allow_rewind_must_be_a_boolean(self, tmp_path: Path) -> None:
        """A non-boolean allowRewind is one line naming the file and line."""
        path = write(tmp_path, "repo: x\nallowRewind: sometimes\n")
        with pytest.raises(UsageError, match=r"agent\.yaml:2"):
            load(path)
        with pytest.raises(UsageError, match="FLEETGATE_ALLOW_REWIND"):
            load(None, {"FLEETGATE_ALLOW_REWIND": "maybe"}, repo="x")

    def test_watch_without_allowed_signers_is_refused(self, tmp_path: Path) -> None:
        """Watch folders import signed bundles only, so they need allowedSigners."""
        path = write(tmp_path, "repo: x\nwatch: [/media/usb]\n")
        with pytest.raises(UsageError, match=r"agent\.yaml:2: .*allowedSigners"):
            load(path)


class TestMistakes:
    """Every mistake is one line naming where it is and what to write."""

    def test_unknown_key_names_file_line_and_suggestion(self, tmp_path: Path) -> None:
        """A misspelt key is reported at its line with a did-you-mean."""
        path = write(tmp_path, "repo: x\npolInterval: 5s\n")
        with pytest.raises(UsageError) as e:
            load(path)
        assert str(e.value) == f"{path}:2: unknown key 'polInterval'; did you mean 'pollInterval'?"

    def test_bad_duration_in_file(self, tmp_path: Path) -> None:
        """A duration without a unit is refused at its line."""
        path = write(tmp_path, "repo: x\nmaxDefer: 10\n")
        with pytest.raises(UsageError, match=rf"^{path}:2: maxDefer"):
            load(path)

    def test_bad_duration_from_env(self) -> None:
        """An environment value names its variable."""
        with pytest.raises(UsageError, match=r"^FLEETGATE_POLL_INTERVAL: pollInterval"):
            load(None, {"FLEETGATE_POLL_INTERVAL": "soon"}, repo="x")

    def test_bad_flag_value(self) -> None:
        """A flag value names its flag."""
        with pytest.raises(UsageError, match=r"^--repair-drift: 'maybe' is not true or false"):
            load(None, repo="x", repairDrift="maybe")

    def test_bad_device_id(self, tmp_path: Path) -> None:
        """A device id outside the allowed pattern is refused."""
        path = write(tmp_path, "repo: x\ndevice: Press_1\n")
        with pytest.raises(UsageError, match=rf"^{path}:2: device"):
            load(path)

    def test_unknown_policy_key(self, tmp_path: Path) -> None:
        """A policy key the fleet policy does not have is refused at its line."""
        path = write(tmp_path, "repo: x\npolicy:\n  privilege: true\n")
        with pytest.raises(UsageError, match=rf"^{path}:3: unknown policy key 'privilege'"):
            load(path)

    def test_invalid_yaml(self, tmp_path: Path) -> None:
        """Broken YAML is one line with the file and line."""
        path = write(tmp_path, "repo: x\nwatch: [a\n")
        with pytest.raises(UsageError, match=rf"^{path}:\d+: YAML"):
            load(path)

    def test_command_exits_2_with_one_line(self, tmp_path: Path) -> None:
        """`fleetgate agent` with a bad configuration prints one line and exits 2."""
        path = write(tmp_path, "repo: x\nstatusListen: nowhere\n")
        result = subprocess.run(
            [sys.executable, "-m", "reconciler", "agent", "--config", path, "--once"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0
        assert f"{path}:2" in result.stderr


class TestEveryConfigProblem:
    """A configuration with several mistakes names each of them, one line apiece."""

    def test_two_mistakes_two_lines(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unknown key and a bad duration are both reported, each with its line, exit 2."""
        config = tmp_path / "agent.yaml"
        config.write_text("device: demo\npollIntervall: 5s\nhealthTimeout: banana\n")
        assert main(["agent", "--config", str(config), "--once"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines == [
            f"fleetgate: {config}:2: unknown key 'pollIntervall'; did you mean 'pollInterval'?",
            f"fleetgate: {config}:3: healthTimeout 'banana' is not a duration like 90s, "
            "1m30s or 2h",
        ]
