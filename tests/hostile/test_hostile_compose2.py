"""Hostile corpus, issue 12 second part: warnings, missing file sources, seeded directories.

Warnings must be printed at their line and never fail ``validate`` (exit 0) unless
``--strict``; a clearly-missing file is named instead of silently becoming an empty
directory; seed lists cannot reach outside the stack or smuggle in what a bind cannot.
Each case failed on the code before (no warning, exit 1 on a key it did not know, or a
silent directory), unless ``REGRESSION`` says it guards on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.hostile import Case, run_case

DEVICE = {"devices/d1.yaml": "stacks: [s]\n"}
C = "stacks/s/compose.yaml"
SVC = "services:\n  x:\n    image: x\n"  # lines 1-3


def compose(text: str, **extra: str) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = dict(DEVICE) | {C: SVC + text}
    files.update(extra)
    return files


REGRESSION = {
    "unset-variable-in-image-stays-an-error": "guards that a warning never hides an emptied tag",
    "restart-policy-unknown-condition": "restart_policy was refused before; guards the enum",
}

CASES = [
    Case(
        name="unset-variable-in-environment-warns",
        files=compose("    environment: {URL: 'http://${HOST}:1880'}\n"),
        expect=(f"{C}:4: warning: variable HOST is not set", "fleet valid", "1 warning"),
        exit_code=0,
    ),
    Case(
        name="unset-variable-warning-fatal-with-strict",
        files=compose("    command: [run, $MODE]\n"),
        expect=(f"{C}:4: warning: variable MODE is not set", "fleet invalid (--strict)"),
        args=("validate", "--repo", "{repo}", "--strict"),
    ),
    Case(
        name="unset-variable-in-image-stays-an-error",
        files=dict(DEVICE) | {C: "services:\n  x:\n    image: x:$TAG\n"},
        expect=(f"{C}:3:", "variable TAG is required"),
    ),
    Case(
        name="missing-acme-json-warns",
        files=compose("    volumes: ['./acme.json:/acme.json']\n"),
        expect=(f"{C}:4: warning:", "'./acme.json' is not in the repository", "stacks/s/acme.json"),
        exit_code=0,
    ),
    Case(
        name="missing-ca-cert-in-subfolder-warns",
        files=compose("    volumes:\n      - ./certs/ca.crt:/etc/ssl/ca.crt:ro\n"),
        expect=(f"{C}:5: warning:", "'./certs/ca.crt' is not in the repository"),
        exit_code=0,
    ),
    Case(
        name="missing-conf-long-syntax-warns",
        files=compose(
            "    volumes:\n      - type: bind\n        source: ./mosquitto.conf\n"
            "        target: /mosquitto/config/mosquitto.conf\n"
        ),
        expect=(f"{C}:5: warning:", "'./mosquitto.conf' is not in the repository"),
        exit_code=0,
    ),
    Case(
        name="seed-outside-the-stack",
        files=compose("    volumes: ['./data:/data']\n")
        | {"stacks/s/stack.yaml": "seed: [../../devices]\n", "stacks/s/data/a.yaml": "a\n"},
        expect=("stacks/s/stack.yaml:1:", "'../../devices' is not inside stacks/s/"),
    ),
    Case(
        name="seed-absolute-host-path",
        files=compose("    volumes: ['./data:/data']\n")
        | {"stacks/s/stack.yaml": "seed:\n  - /etc\n", "stacks/s/data/a.yaml": "a\n"},
        expect=("stacks/s/stack.yaml:2:", "'/etc' is not inside stacks/s/"),
    ),
    Case(
        name="seed-not-in-the-repository",
        files=compose("    volumes: ['./data:/data']\n")
        | {"stacks/s/stack.yaml": "seed: [data]\n"},
        expect=("stacks/s/stack.yaml:1:", "'data' is not in the repository", "commit it"),
    ),
    Case(
        name="rw-repository-folder-warns-about-seed",
        files=compose("    volumes: ['./conf:/etc/app:rw']\n") | {"stacks/s/conf/app.ini": "a=1\n"},
        expect=(f"{C}:4: warning:", "mounted writable", "list conf under seed:"),
        exit_code=0,
    ),
    Case(
        name="swarm-placement-warns",
        files=compose("    deploy:\n      placement: {constraints: [node.role == manager]}\n"),
        expect=(f"{C}:5: warning:", "deploy.placement: Swarm only: ignored"),
        exit_code=0,
    ),
    Case(
        name="restart-policy-max-attempts-with-any",
        files=compose("    deploy:\n      restart_policy: {condition: any, max_attempts: 3}\n"),
        expect=(f"{C}:5:", "max_attempts: only goes with condition: on-failure"),
    ),
    Case(
        name="restart-policy-unknown-condition",
        files=compose("    deploy:\n      restart_policy: {condition: sometimes}\n"),
        expect=(f"{C}:5:", "sometimes"),
    ),
    Case(
        name="overlay-depends-on-a-base-service",
        files=compose("    depends_on: [mosquitto]\n"),
        expect=(f"{C}:4:", "unknown service 'mosquitto'", "merge an overlay into its base"),
    ),
    Case(
        name="missing-file-through-a-variable-warns",
        files=compose("    volumes: ['./${CFG}:/etc/app.yaml']\n")
        | {"devices/d1.yaml": "stacks: [s]\nvariables: {CFG: app.yaml}\n"},
        expect=(f"{C}:4: warning:", "'./app.yaml' is not in the repository"),
        exit_code=0,
    ),
]


class TestComposeCorpus2:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """A hostile Compose input is answered at its line with the reason, quickly."""
        run_case(case, tmp_path)
