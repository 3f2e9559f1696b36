"""The agent's report* keys (DESIGN.md §3): parsed, checked, credentials from a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.agent.config import load_config
from reconciler.errors import UsageError


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text("device: d1\nrepo: /srv/fleet\n" + text)
    return path


class TestReportConfig:
    def test_defaults_without_report(self, tmp_path: Path) -> None:
        """Without report the agent does not report; topic and interval have defaults."""
        config = load_config(str(_config(tmp_path, "")), {}, {})
        assert config.report is None
        assert (config.report_topic, config.report_interval) == ("fleetgate", 300.0)

    def test_full_report_configuration(self, tmp_path: Path) -> None:
        """URL, user, password file, CA, topic and interval end up in the config."""
        (tmp_path / "pw").write_text("s3cret\n")
        (tmp_path / "ca.pem").write_text("x")
        path = _config(
            tmp_path,
            f"report: mqtts://broker.plant:8884\nreportUsername: d1\n"
            f"reportPasswordFile: {tmp_path}/pw\nreportCA: {tmp_path}/ca.pem\n"
            "reportTopic: plant/a\nreportInterval: 1m\n",
        )
        config = load_config(str(path), {}, {})
        assert config.report is not None
        assert (config.report.host, config.report.port, config.report.tls) == (
            "broker.plant",
            8884,
            True,
        )
        assert (config.report.username, config.report.password) == ("d1", "s3cret")
        assert (config.report_topic, config.report_interval) == ("plant/a", 60.0)
        assert "s3cret" not in repr(config)

    def test_environment_sets_the_broker(self, tmp_path: Path) -> None:
        """FLEETGATE_REPORT works like every other key; mqtt:// defaults to port 1883."""
        config = load_config(str(_config(tmp_path, "")), {"FLEETGATE_REPORT": "mqtt://b"}, {})
        assert config.report is not None
        assert (config.report.port, config.report.tls) == (1883, False)

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("report: http://b:1883\n", "agent.yaml:3: 'http://b:1883' is not mqtt://"),
            ("report: mqtt://u:p@b:1883\n", "agent.yaml:3: put no credentials in the broker URL"),
            ("report: mqtt://b\nreportCA: /x.pem\n", "agent.yaml:4: reportCA needs an mqtts://"),
            ("report: mqtt://b\nreportUsername: d1\n", "go together"),
            ("reportUsername: d1\n", "agent.yaml:3: reportUsername needs report"),
            ("report: mqtt://b\nreportTopic: 'a/+/b'\n", "agent.yaml:4: reportTopic 'a/+/b'"),
            ("report: mqtt://b\nreportInterval: often\n", "agent.yaml:4: reportInterval"),
            (
                "report: mqtt://b\nreportUsername: d1\nreportPasswordFile: /nope/pw\n",
                "agent.yaml:5: cannot read the password file /nope/pw",
            ),
        ],
    )
    def test_mistakes_are_one_line(self, tmp_path: Path, text: str, fragment: str) -> None:
        """Each report mistake is one line naming file:line and what to write."""
        with pytest.raises(UsageError) as caught:
            load_config(str(_config(tmp_path, text)), {}, {})
        assert fragment in str(caught.value)
        assert "\n" not in str(caught.value)
