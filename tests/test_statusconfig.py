"""The status port's configuration (statusListen, statusTokenFile) and the agent's loud
warning about an unsigned, unrestricted device (DESIGN.md §2 rule 8) in its status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.statusdata import example_status

from reconciler.agent.config import config_warnings, load_config
from reconciler.cli.status import describe
from reconciler.errors import UsageError
from reconciler.report.status import status_from_json

TOKEN = "0123456789abcdef-token"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return str(path)


def load(config: str | None, env: dict[str, str] | None = None, **flags: Any) -> Any:
    return load_config(config, env or {}, flags, hostname="edge-01")


def token_file(tmp_path: Path, content: str = TOKEN + "\n", mode: int = 0o600) -> Path:
    path = tmp_path / "status.token"
    path.write_text(content)
    path.chmod(mode)
    return path


class TestStatusListen:
    """statusListen is an IP literal, localhost or empty host with a port up to 65535."""

    @pytest.mark.parametrize(
        "listen", ["127.0.0.1:9180", "[::1]:9180", "0.0.0.0:1", ":9180", "localhost:9180"]
    )
    def test_accepted(self, tmp_path: Path, listen: str) -> None:
        """The documented forms load unchanged."""
        cfg = load(write(tmp_path, f"repo: /r\nstatusListen: '{listen}'\n"))
        assert cfg.status_listen == listen

    @pytest.mark.parametrize(
        ("listen", "reason"),
        [
            ("127.0.0.1:70000", "above 65535"),
            ("status.example.com:9180", "is not IP:PORT"),
            ("999.1.1.1:9180", "is not IP:PORT"),
            ("[fe80::zz]:9180", "is not"),
        ],
    )
    def test_refused_with_file_and_line(self, tmp_path: Path, listen: str, reason: str) -> None:
        """A bad listen address is one line naming the file and line and what to write."""
        config = write(tmp_path, f"repo: /r\n\nstatusListen: '{listen}'\n")
        with pytest.raises(UsageError) as e:
            load(config)
        assert str(e.value).startswith(f"{config}:3: statusListen")
        assert reason in str(e.value)
        assert "\n" not in str(e.value)


class TestStatusTokenFile:
    """The token file is read at load, from the file, the environment or the flag."""

    def test_file_env_and_flag(self, tmp_path: Path) -> None:
        """statusTokenFile, FLEETGATE_STATUS_TOKEN_FILE and --status-token-file all work."""
        path = token_file(tmp_path)
        by_file = load(write(tmp_path, f"repo: /r\nstatusTokenFile: {path}\n"))
        by_env = load(None, {"FLEETGATE_STATUS_TOKEN_FILE": str(path)}, repo="/r")
        by_flag = load(None, repo="/r", statusTokenFile=str(path))
        for cfg in (by_file, by_env, by_flag):
            assert cfg.status_token == TOKEN
            assert cfg.status_token_file == path
            assert TOKEN not in repr(cfg)

    def test_no_token_by_default(self) -> None:
        """Without the key POST /reconcile needs no token."""
        assert load(None, repo="/r").status_token is None

    @pytest.mark.parametrize(
        ("content", "mode", "reason"),
        [
            (None, 0o600, "no such file"),
            ("", 0o600, "is empty"),
            ("  \n", 0o600, "is empty"),
            (TOKEN, 0o644, "readable by other users (mode 644); chmod 600"),
            (TOKEN, 0o640, "readable by other users"),
            ("short", 0o600, "shorter than 16"),
            (TOKEN + "\n" + TOKEN, 0o600, "one token of printable ASCII"),
            ("a token with spaces inside", 0o600, "one token of printable ASCII"),
            (TOKEN + "\x1b[31m", 0o600, "one token of printable ASCII"),
        ],
    )
    def test_bad_token_file(
        self, tmp_path: Path, content: str | None, mode: int, reason: str
    ) -> None:
        """A missing, empty, shared, short or multi-token file is one line; no token shown."""
        path = tmp_path / "status.token"
        if content is not None:
            token_file(tmp_path, content, mode)
        config = write(tmp_path, f"repo: /r\nstatusTokenFile: {path}\n")
        with pytest.raises(UsageError) as e:
            load(config)
        message = str(e.value)
        assert message.startswith(f"{config}:2: statusTokenFile {path}")
        assert reason in message
        assert "\n" not in message
        assert TOKEN not in message

    def test_folder_refused(self, tmp_path: Path) -> None:
        """A folder is not a token file."""
        with pytest.raises(UsageError, match="is not a file"):
            load(None, repo="/r", statusTokenFile=str(tmp_path))


class TestUnsignedWarning:
    """Without allowedSigners and without a local policy the agent warns (rule 8)."""

    def test_warned(self) -> None:
        """No signers, no policy: one unsigned-and-unrestricted warning naming the repo."""
        (warning,) = config_warnings(load(None, repo="git://fleet.example/fleet.git"))
        assert warning.startswith("unsigned-and-unrestricted: no allowedSigners and no local")
        assert "whoever can push to git://fleet.example/fleet.git may run" in warning

    def test_repo_credentials_redacted(self) -> None:
        """Credentials in the repository URL never reach the warning."""
        (warning,) = config_warnings(load(None, repo="https://bot:hunter2pw@git.example/f.git"))
        assert "hunter2pw" not in warning

    def test_signers_or_policy_silence_it(self, tmp_path: Path) -> None:
        """Either allowedSigners or a local policy means no warning."""
        signers = load(None, repo="/r", allowedSigners=str(tmp_path / "signers"))
        policy = load(write(tmp_path, "repo: /r\npolicy:\n  privileged: false\n"))
        assert config_warnings(signers) == ()
        assert config_warnings(policy) == ()


class TestWarningsInStatus:
    """The status carries the warnings; JSON and `fleetgate status` show them."""

    def test_json_round_trip(self) -> None:
        """warnings is a list in the JSON contract and survives a round trip."""
        warning = "unsigned-and-unrestricted: no allowedSigners and no local policy: ..."
        status = example_status().__class__(device="d1", warnings=(warning,))
        data = status.to_json()
        assert data["warnings"] == [warning]
        assert status_from_json(data).warnings == (warning,)

    def test_absent_by_default(self) -> None:
        """A device without warnings has an empty list and no WARNING line."""
        status = example_status()
        assert status.to_json()["warnings"] == []
        assert not [line for line in describe(status, source="status.json", live=False)
                    if "WARNING" in line]  # fmt: skip

    def test_text_output(self) -> None:
        """`fleetgate status` prints each warning on a WARNING line."""
        status = example_status().__class__(device="d1", warnings=("unsigned-and-unrestricted: x",))
        lines = describe(status, source="status.json", live=False)
        assert "WARNING     unsigned-and-unrestricted: x" in lines
