"""Redaction: secret names, URL credentials of every scheme, known values, and a canary
fleet run through every command that prints, as a real ``fleetgate`` process."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from support.gitserver import GitDaemon, Origin, SmartHttpServer, free_port
from support.hostile import Outcome, run_fleetgate

from reconciler.redaction import (
    MASKED,
    is_secret_name,
    mask_environment,
    redact,
    redact_document,
    redact_url,
    redact_urls,
    secret_values,
    text_secrets,
    url_secrets,
)
from reconciler.report.logs import configure_logging
from reconciler.report.status import FetchState

CANARY = "CANARY-7f3a9c"


class TestSecretNames:
    """One rule decides which variables are secret, broad on purpose."""

    @pytest.mark.parametrize(
        "name",
        [
            "DB_PASS",
            "ADMIN_PWD",
            "PASSWD",
            "PASSWORD",
            "MQTT_PASSWORD",
            "API_KEY",
            "api_key",
            "PRIVATE_KEY",
            "SSH_PRIVATE",
            "GITHUB_TOKEN",
            "CLIENT_SECRET",
            "AWS_CREDENTIALS",
            "BASIC_AUTH",
            "TLS_CERT",
            "HASH_SALT",
            "SESSION_COOKIE",
        ],
    )
    def test_secret(self, name: str) -> None:
        """Every common spelling of a password, key, token or certificate is secret."""
        assert is_secret_name(name)

    @pytest.mark.parametrize("name", ["TZ", "LOG_LEVEL", "PLC_HOST", "MQTT_URL", "LINE"])
    def test_not_secret(self, name: str) -> None:
        """Plain settings stay readable."""
        assert not is_secret_name(name)


class TestUrlCredentials:
    """The userinfo of a URL of any scheme never survives into text."""

    @pytest.mark.parametrize(
        "scheme", ["http", "https", "git", "ssh", "git+ssh", "ftp", "mqtt", "mqtts", "file", "amqp"]
    )
    def test_user_and_password(self, scheme: str) -> None:
        """``scheme://user:pw@host`` becomes ``scheme://***@host`` for every scheme."""
        text = f"cannot fetch {scheme}://user:{CANARY}@h.example:1/x: boom"
        assert redact_urls(text) == f"cannot fetch {scheme}://***@h.example:1/x: boom"

    @pytest.mark.parametrize("scheme", ["https", "ssh", "git"])
    def test_user_only(self, scheme: str) -> None:
        """A user without password is redacted too: a token is often the user part."""
        assert (
            redact_urls(f"{scheme}://{CANARY}@github.com/o/r") == f"{scheme}://***@github.com/o/r"
        )

    def test_percent_encoded(self) -> None:
        """Percent-encoded userinfo is redacted as a whole."""
        assert redact_urls("https://u%40x:p%3Aw%2F@h/x") == "https://***@h/x"

    def test_raw_at_in_password(self) -> None:
        """A raw ``@`` in the password is covered up to the last ``@`` of the authority."""
        assert redact_urls(f"git://u:p@{CANARY}@h/x") == "git://***@h/x"

    def test_several_urls(self) -> None:
        """Every URL of a text is redacted, and a path ``@`` after the host is kept."""
        text = f"a https://a:{CANARY}@h1/x then mqtt://{CANARY}@h2:1883 and git://h3/x@v1"
        assert redact_urls(text) == "a https://***@h1/x then mqtt://***@h2:1883 and git://h3/x@v1"

    def test_quoted(self) -> None:
        """A URL quoted by git (``'...'``) is redacted inside the quotes."""
        assert redact_urls(f"unable to access 'https://u:{CANARY}@h/x/'") == (
            "unable to access 'https://***@h/x/'"
        )

    def test_no_credentials_unchanged(self) -> None:
        """Text without userinfo (an e-mail address, a plain URL) is left as it is."""
        text = "mail ops@plant.example about https://h/x and /srv/fleet"
        assert redact_urls(text) == text


class TestSingleUrl:
    """A URL a user hands over is shown without its userinfo and split into its secrets."""

    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            (f"git://user:{CANARY}@127.0.0.1:1/x", "git://***@127.0.0.1:1/x"),
            (f"http://u:pa/{CANARY}@127.0.0.1:1/x", "http://***@127.0.0.1:1/x"),
            (f"{CANARY}:pw@127.0.0.1:fleet", "***@127.0.0.1:fleet"),
            ("git@github.com:o/r.git", "***@github.com:o/r.git"),
            ("https://h/x", "https://h/x"),
            ("/srv/fleet", "/srv/fleet"),
        ],
    )
    def test_redact_url(self, url: str, shown: str) -> None:
        """The userinfo goes, even with a raw ``/`` in the password or in scp-like form."""
        assert redact_url(url) == shown

    def test_url_secrets(self) -> None:
        """The whole userinfo, its parts and their decoded forms are known secrets."""
        found = url_secrets(f"git://user:{CANARY}%21@h/x")
        assert {f"user:{CANARY}%21", f"{CANARY}%21", f"{CANARY}!", "user"} <= found

    def test_short_parts_only_whole(self) -> None:
        """A part shorter than four characters is found only inside the whole userinfo."""
        assert url_secrets("git://u:pw@h/x") == frozenset({"u:pw"})

    def test_command_line(self) -> None:
        """The credentials of URLs on a command line are found, digests are not URLs."""
        found = text_secrets(
            [
                "validate",
                "--repo",
                f"git://u:{CANARY}@h/x",
                f"--repo=ssh://{CANARY}x@h/y",
                "busybox@sha256:abcd",
            ]
        )
        assert CANARY in found and f"{CANARY}x" in found
        assert not any("busybox" in s for s in found)


class TestKnownValues:
    """Literal secret values vanish from text wherever they are quoted."""

    def test_value_anywhere(self) -> None:
        """A known value is replaced however git or a compose file quotes it, any case."""
        text = f"unable to look up user:{CANARY}@h; host {CANARY.lower()}"
        assert CANARY.lower() not in redact(text, {f"user:{CANARY}", CANARY}).lower()

    def test_longest_first(self) -> None:
        """The whole userinfo is replaced before its parts, leaving one marker."""
        assert redact(f"x user:{CANARY}@h", {f"user:{CANARY}", CANARY}) == "x ***@h"

    def test_secret_values_of_environment(self) -> None:
        """Values of secret-named variables are known, short ones and plain ones are not."""
        env = [("DB_PASS", CANARY), ("ADMIN_PWD", "abc"), ("TZ", "Europe/Berlin")]
        assert secret_values(env) == frozenset({CANARY})

    def test_mask_environment(self) -> None:
        """Secret-named values are masked whole, URL credentials in other values redacted."""
        env = [("DB_PASS", CANARY), ("MQTT_URL", f"mqtt://bot:{CANARY}@b:1883"), ("TZ", "UTC")]
        assert mask_environment(env) == [
            ("DB_PASS", MASKED),
            ("MQTT_URL", "mqtt://***@b:1883"),
            ("TZ", "UTC"),
        ]

    def test_document(self) -> None:
        """Every string inside a JSON-like document is redacted, the shape kept."""
        doc = {"a": [f"--password={CANARY}", ("x", 1)], "b": {"c": f"git://{CANARY}@h"}}
        assert redact_document(doc, {CANARY}) == {
            "a": ["--password=***", ("x", 1)],
            "b": {"c": "git://***@h"},
        }


class TestLogs:
    """The structlog pipeline redacts URL credentials in every field of every event."""

    def test_event_fields(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A URL with credentials logged by mistake is rendered redacted."""
        configure_logging(json=True)
        structlog.get_logger().info(
            f"fetch git://u:{CANARY}@h/x", repo=f"https://{CANARY}@h/x", urls=[f"ssh://{CANARY}@h"]
        )
        err = capsys.readouterr().err
        assert CANARY not in err
        assert json.loads(err)["repo"] == "https://***@h/x"


# ----------------------------------------------------------------------- canary fleet

FLEET = {
    "devices/d1.yaml": f"stacks: [app]\nvariables:\n  DB_PASS: {CANARY}\n",
    "stacks/app/compose.yaml": (
        "services:\n  app:\n    image: busybox:1\n"
        f'    command: ["app", "--password", "{CANARY}", "--broker", '
        f'"mqtts://bot:{CANARY}@broker:8883"]\n'
        "    environment:\n"
        "      DB_PASS: ${DB_PASS}\n"
        f"      ADMIN_PWD: {CANARY}\n"
        f"      PASSWD: {CANARY}\n"
        f"      api_key: {CANARY}\n"
        f"      MQTT_URL: mqtt://bot:{CANARY}@broker:1883\n"
        "      PLAIN: visible\n"
    ),
}


def _forbid(outcome: Outcome) -> str:
    """The output, after asserting the canary is nowhere in it and there is no traceback."""
    text = outcome.output
    assert CANARY.lower() not in text.lower(), text
    assert "Traceback" not in text, text
    return text


@pytest.fixture
def fleet(tmp_path: Path) -> Origin:
    origin = Origin(tmp_path / "fleet")
    compose = FLEET["stacks/app/compose.yaml"]
    command = next(line for line in compose.splitlines() if "command:" in line)
    base = compose.replace(command, '    command: ["app"]')
    origin.commit({**FLEET, "stacks/app/compose.yaml": base}, "the app without arguments")
    origin.commit(FLEET, "the canary fleet: the command quotes the canary")
    return origin


def _env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(tmp_path / "cache"), "FLEETGATE_STATE_DIR": str(tmp_path / "st")}


class TestCanaryFleet:
    """A canary value in secret-named variables, a command and URLs reaches no output."""

    def test_render_both_forms(self, fleet: Origin, tmp_path: Path) -> None:
        """render (text and JSON) masks every secret-named value and redacts the rest."""
        for output in ("text", "json"):
            outcome = run_fleetgate(
                ["render", "--device", "d1", "--repo", str(fleet.path), "-o", output],
                cwd=tmp_path,
                env=_env(tmp_path),
            )
            assert outcome.exit_code == 0, outcome.output
            text = _forbid(outcome)
            assert "PLAIN" in text and "visible" in text and "mqtt://***@broker:1883" in text

    def test_impact_every_format(self, fleet: Origin, tmp_path: Path) -> None:
        """impact (text, JSON, markdown) shows the command change without the canary."""
        for output in ("text", "json", "markdown"):
            outcome = run_fleetgate(
                ["impact", "HEAD~1", "HEAD", "--repo", str(fleet.path), "-o", output],
                cwd=tmp_path,
                env=_env(tmp_path),
            )
            assert outcome.exit_code == 0, outcome.output
            assert "command" in _forbid(outcome)

    def test_validate(self, fleet: Origin, tmp_path: Path) -> None:
        """validate of the canary fleet passes and prints no canary (a regression guard)."""
        outcome = run_fleetgate(
            ["validate", "--repo", str(fleet.path), "-o", "json"], cwd=tmp_path, env=_env(tmp_path)
        )
        assert outcome.exit_code == 0, outcome.output
        _forbid(outcome)

    @pytest.mark.docker
    def test_plan_json(self, fleet: Origin, tmp_path: Path) -> None:
        """plan -o json (real engine) carries no environment value (a regression guard)."""
        outcome = run_fleetgate(
            ["plan", "--device", "d1", "--repo", str(fleet.path), "-o", "json"],
            cwd=tmp_path,
            env=_env(tmp_path),
        )
        assert outcome.exit_code == 0, outcome.output
        assert "d1_app_app" in _forbid(outcome)


class TestCanaryUrls:
    """Credentials in ``--repo`` never reach output, whatever git answers."""

    @pytest.mark.parametrize(
        "url",
        [
            f"git://user:{CANARY}@127.0.0.1:{{port}}/fleet",
            f"git://{CANARY}@127.0.0.1:{{port}}/fleet",
            f"ssh://user:{CANARY}@127.0.0.1:{{port}}/fleet",
            f"https://{CANARY}@127.0.0.1:{{port}}/fleet",
            f"mqtt://user:{CANARY}@127.0.0.1:{{port}}/fleet",
            f"http://user:pa/{CANARY}@127.0.0.1:{{port}}/fleet",
            f"{CANARY}:pw@127.0.0.1:fleet",
        ],
    )
    def test_unreachable(self, url: str, tmp_path: Path) -> None:
        """An unreachable server (closed port on 127.0.0.1): one redacted line, exit 1."""
        repo = url.format(port=free_port())
        for command in (["validate"], ["render", "--device", "d1"]):
            outcome = run_fleetgate([*command, "--repo", repo], cwd=tmp_path, env=_env(tmp_path))
            assert outcome.exit_code == 1, outcome.output
            text = _forbid(outcome)
            assert "cannot fetch" in text and "***@" in text, text

    def test_git_daemon_wrong_path(self, daemon: GitDaemon, tmp_path: Path) -> None:
        """A real git daemon refusing an unknown path: git's complaint, credentials gone."""
        repo = daemon.url("no-such-fleet").replace("git://", f"git://user:{CANARY}@")
        outcome = run_fleetgate(["validate", "--repo", repo], cwd=tmp_path, env=_env(tmp_path))
        assert outcome.exit_code == 1, outcome.output
        assert "git://***@127.0.0.1" in _forbid(outcome)

    def test_http_wrong_path(self, http: SmartHttpServer, tmp_path: Path) -> None:
        """A real smart-HTTP server answering 404 for a wrong path, with user:pw in the URL."""
        repo = http.url("no-such-fleet", credentials=f"user:{CANARY}")
        outcome = run_fleetgate(["validate", "--repo", repo], cwd=tmp_path, env=_env(tmp_path))
        assert outcome.exit_code == 1, outcome.output
        assert "http://***@127.0.0.1" in _forbid(outcome)

    def test_status_fetch_error(self) -> None:
        """The fetch error the agent keeps for its status has URL credentials redacted."""
        now = datetime(2026, 1, 1, tzinfo=UTC)
        failed = FetchState().failed(f"cannot fetch git://u:{CANARY}@h/x: refused", now=now)
        assert failed.error == "cannot fetch git://***@h/x: refused"
