"""Hostile corpus, redaction: a secret in a fleet or in ``--repo`` never reaches output.

Each case also asserts the canary is absent from stdout and stderr (``forbid``). Every
case printed the canary (or failed its expectations) before ``reconciler/redaction.py``
took over, except the three marked "regression guard", which main already handled.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.hostile import Case, run_case

CANARY = "CANARY-h0st1le"
DEVICE = {"devices/d1.yaml": "stacks: [s]\n"}
RENDER = ("render", "--device", "d1", "--repo", "{repo}")


def _env_fleet(name: str) -> dict[str, str | bytes]:
    return DEVICE | {
        "stacks/s/compose.yaml": (
            f"services:\n  x:\n    image: x\n    environment:\n      {name}: {CANARY}\n"
        )
    }


def _validate_url(url: str) -> tuple[str, ...]:
    return ("validate", "--repo", url)


CASES = [
    Case(
        name="render-db-pass",
        files=_env_fleet("DB_PASS"),
        args=RENDER,
        exit_code=0,
        expect=("DB_PASS=********",),
    ),
    Case(
        name="render-admin-pwd",
        files=_env_fleet("ADMIN_PWD"),
        args=RENDER,
        exit_code=0,
        expect=("ADMIN_PWD=********",),
    ),
    Case(
        name="render-passwd",
        files=_env_fleet("PASSWD"),
        args=RENDER,
        exit_code=0,
        expect=("PASSWD=********",),
    ),
    # regression guard: main already hid this one; the shared rule must keep doing so
    Case(
        name="render-api-key-lowercase-json",
        files=_env_fleet("api_key"),
        args=(*RENDER, "-o", "json"),
        exit_code=0,
        expect=('"api_key": "********"',),
    ),
    Case(
        name="render-url-credentials-in-plain-variable",
        files=DEVICE
        | {
            "stacks/s/compose.yaml": (
                "services:\n  x:\n    image: x\n    environment:\n"
                f"      MQTT_URL: mqtts://bot:{CANARY}@broker:8883\n"
            )
        },
        args=RENDER,
        exit_code=0,
        expect=("MQTT_URL=mqtts://***@broker:8883",),
    ),
    Case(
        name="git-url-password-unreachable",
        files=DEVICE,
        args=_validate_url(f"git://user:{CANARY}@127.0.0.1:1/x"),
        expect=("cannot fetch git://***@127.0.0.1:1/x", "unable to look up ***@127.0.0.1"),
    ),
    # regression guard: main already hid this one; the shared rule must keep doing so
    Case(
        name="https-token-user-unreachable",
        files=DEVICE,
        args=_validate_url(f"https://{CANARY}@127.0.0.1:1/x"),
        expect=("cannot fetch https://***@127.0.0.1:1/x", "connect"),
    ),
    # regression guard: main already hid this one; the shared rule must keep doing so
    Case(
        name="ssh-user-password-unreachable",
        files=DEVICE,
        args=_validate_url(f"ssh://u:{CANARY}@127.0.0.1:1/x"),
        expect=("cannot fetch ssh://***@127.0.0.1:1/x", "ssh:"),
    ),
    Case(
        name="ssh-token-user-unreachable",
        files=DEVICE,
        args=_validate_url(f"ssh://{CANARY}@127.0.0.1:1/x"),
        expect=("cannot fetch ssh://***@127.0.0.1:1/x", "Connection refused"),
    ),
    Case(
        name="http-raw-slash-in-password",
        files=DEVICE,
        args=_validate_url(f"http://u:pa/{CANARY}@127.0.0.1:1/x"),
        expect=("cannot fetch http://***@127.0.0.1:1/x", "bad/illegal format"),
    ),
    Case(
        name="scp-like-user-password",
        files=DEVICE,
        args=_validate_url(f"{CANARY}:pw@127.0.0.1:fleet"),
        expect=("cannot fetch ***@127.0.0.1:fleet", "ssh:"),
    ),
    Case(
        name="finding-quotes-a-url",
        files=DEVICE
        | {
            "stacks/s/compose.yaml": (
                f"services:\n  x:\n    image: x\n    env_file: https://u:{CANARY}@h.example/env\n"
            )
        },
        expect=("stacks/s/compose.yaml:4:", "env_file 'https://***@h.example/env' does not exist"),
    ),
    Case(
        name="finding-quotes-a-url-json",
        files=DEVICE
        | {
            "stacks/s/compose.yaml": (
                f"services:\n  x:\n    image: x\n    env_file: mqtt://{CANARY}@h.example/env\n"
            )
        },
        args=("validate", "--repo", "{repo}", "-o", "json"),
        expect=('"line": 4', "mqtt://***@h.example/env"),
    ),
]


class TestRedactionCorpus:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """A secret in the fleet or in --repo is refused or shown masked, never printed."""
        outcome = run_case(
            Case(
                name=case.name,
                files=case.files,
                expect=case.expect,
                args=case.args,
                exit_code=case.exit_code,
                env={"XDG_CACHE_HOME": str(tmp_path / "cache"), **case.env},
            ),
            tmp_path,
        )
        assert CANARY.lower() not in outcome.output.lower(), outcome.output
