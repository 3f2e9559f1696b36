"""Hostile corpus, Compose keys of issue 12: what real files may now ask for, and no more.

``security_opt`` and ``pid`` reach the host, so they pass the one policy check; mount
suffixes fleetgate cannot carry are refused by name instead of being dropped. Each case
failed on the code before (the key was refused as unsupported, or the suffix silently
dropped with exit 0), unless ``REGRESSION`` says it guards on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.hostile import Case, run_case

DEVICE = {"devices/d1.yaml": "stacks: [s]\n"}
C = "stacks/s/compose.yaml"
SVC = "services:\n  x:\n    image: x\n"  # lines 1-3


def compose(text: str, policy: str = "") -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = dict(DEVICE) | {C: SVC + text}
    if policy:
        files["fleet.yaml"] = "policy:\n" + policy
    return files


REGRESSION = {
    "pid-host-with-policy-allowed": "pid was unsupported before; kept as the positive control",
    "dotenv-sets-the-image-tag": "positive control (old code passed it by emptying the tag)",
    "cap-add-all-needs-all-in-policy": "cap_add ALL was already refused; guards policy [ALL]",
}

CASES = [
    Case(
        name="seccomp-unconfined-without-policy",
        files=compose("    security_opt: [seccomp:unconfined]\n"),
        expect=(f"{C}:4:", "security_opt seccomp:unconfined is not allowed", "policy.unconfined"),
    ),
    Case(
        name="apparmor-unconfined-equals-form",
        files=compose("    security_opt: ['apparmor=unconfined']\n"),
        expect=(f"{C}:4:", "apparmor=unconfined is not allowed", "policy.unconfined"),
    ),
    Case(
        name="label-disable-without-policy",
        files=compose("    security_opt: ['label:disable']\n"),
        expect=(f"{C}:4:", "label:disable is not allowed"),
    ),
    Case(
        name="security-opt-interpolated-unconfined",
        files=compose("    security_opt: ['seccomp:${S}']\n")
        | {"devices/d1.yaml": "stacks: [s]\nvariables: {S: unconfined}\n"},
        expect=(f"{C}:4:", "seccomp:unconfined is not allowed"),
    ),
    Case(
        name="security-opt-unknown-value",
        files=compose("    security_opt: ['systempaths=none']\n"),
        expect=(f"{C}:4:", "security_opt 'systempaths=none' is not supported"),
    ),
    Case(
        name="pid-host-without-policy",
        files=compose("    pid: host\n"),
        expect=(f"{C}:4:", "pid: host is not allowed", "policy.hostPid"),
    ),
    Case(
        name="pid-host-interpolated",
        files=compose("    pid: ${P}\n") | {"stacks/s/.env": "P=host\n"},
        expect=(f"{C}:4:", "pid: host is not allowed"),
    ),
    Case(
        name="pid-host-with-policy-allowed",
        files=compose("    pid: host\n", policy="  hostPid: true\n"),
        expect=("fleet valid",),
        exit_code=0,
    ),
    Case(
        name="pid-foreign-container",
        files=compose("    pid: service:ghost\n"),
        expect=(f"{C}:4:", "service 'ghost' is not defined"),
    ),
    Case(
        name="bind-rshared-propagation",
        files=compose("    volumes: ['/srv/x:/x:rshared']\n", policy="  hostPaths: [/srv]\n"),
        expect=(f"{C}:4:", ":rshared is mount propagation"),
    ),
    Case(
        name="bind-selinux-relabel-z",
        files=compose("    volumes: ['./data:/data:z']\n"),
        expect=(f"{C}:4:", ":z is SELinux relabelling"),
    ),
    Case(
        name="long-bind-propagation",
        files=compose(
            "    volumes:\n      - type: bind\n        source: /srv/x\n        target: /x\n"
            "        bind: {propagation: rshared}\n",
            policy="  hostPaths: [/srv]\n",
        ),
        expect=(f"{C}:5:", "bind.propagation is mount propagation"),
    ),
    Case(
        name="unset-variable-empties-image-tag",
        files=dict(DEVICE) | {C: "services:\n  n8n:\n    image: n8n:${TAG}\n"},
        expect=(f"{C}:3:", "variable TAG is required", "services.n8n.image"),
    ),
    Case(
        name="unset-variable-empties-bind-source",
        files=dict(DEVICE) | {C: SVC + "    volumes: ['${ROOT}/etc:/etc/app']\n"},
        expect=(f"{C}:4:", "variable ROOT is required"),
    ),
    Case(
        name="dotenv-sets-the-image-tag",
        files=dict(DEVICE)
        | {C: "services:\n  n8n:\n    image: n8n:${TAG}\n", "stacks/s/.env": "TAG=1.0\n"},
        expect=("fleet valid",),
        exit_code=0,
    ),
    Case(
        name="dotenv-malformed-line",
        files=dict(DEVICE) | {C: SVC, "stacks/s/.env": "TAG=1\nnot a variable\n"},
        expect=("stacks/s/.env:2:", "is not a variable name"),
    ),
    Case(
        name="cap-add-all-needs-all-in-policy",
        files=compose("    cap_add: [ALL]\n", policy="  capabilities: [NET_ADMIN]\n"),
        expect=(f"{C}:4:", "capability ALL is not allowed"),
    ),
]


class TestComposeCorpus:
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case, tmp_path: Path) -> None:
        """A hostile Compose key is refused at its line with the reason, quickly."""
        run_case(case, tmp_path)
