"""The hostile-input corpus: a fleet (or bundle) an attacker with push rights could
write, the command a reviewer, CI or the agent would run on it, and what it must say.

Every case runs ``fleetgate`` as a real process, so "no traceback" and the exit code
are what a user sees. A case asserts:

- the exit code;
- every expected fragment (the file, ``file:line`` and the reason) is on stderr or stdout;
- no Python traceback and no raw control character (ESC, NUL, bidi overrides) reached
  the output;
- the command finished within ``LIMIT_S`` seconds.

Test modules under ``tests/hostile/`` build ``Case`` values and pass them to
:func:`run_case`; the corpus is the union of those modules.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

LIMIT_S = 2.0
"""Each case must finish within this many seconds (process start included)."""

_RAW_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Case:
    """One hostile input and what fleetgate must answer.

    ``files`` maps repository-relative paths to their content (``bytes`` for content
    YAML cannot carry as text). ``args`` is the fleetgate command line; ``{repo}`` in
    it is replaced by the repository folder. ``expect`` fragments must all appear in
    the combined output.
    """

    name: str
    files: dict[str, str | bytes]
    expect: tuple[str, ...]
    args: tuple[str, ...] = ("validate", "--repo", "{repo}")
    exit_code: int = 1
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def run_fleetgate(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Outcome:
    """``fleetgate ARGS`` as a fresh process; output decoded leniently (it is checked)."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        capture_output=True,
        timeout=60,
        check=False,
    )
    return Outcome(
        exit_code=proc.returncode,
        stdout=proc.stdout.decode("utf-8", "replace"),
        stderr=proc.stderr.decode("utf-8", "replace"),
        seconds=time.monotonic() - started,
    )


def check_outcome(case: Case, outcome: Outcome) -> None:
    """The assertions every corpus case shares (see the module docstring)."""
    text = outcome.output
    assert "Traceback" not in text, f"{case.name}: traceback\n{text}"
    assert outcome.exit_code == case.exit_code, (
        f"{case.name}: exit {outcome.exit_code}, wanted {case.exit_code}\n{text}"
    )
    for fragment in case.expect:
        assert fragment in text, f"{case.name}: {fragment!r} not in output\n{text}"
    raw = _RAW_CONTROL.search(text)
    assert raw is None, f"{case.name}: raw control character {raw.group()!r} in output\n{text!r}"
    assert outcome.seconds < LIMIT_S, f"{case.name}: took {outcome.seconds:.2f}s"


def run_case(case: Case, tmp_path: Path) -> Outcome:
    """Write the case's repository under ``tmp_path/repo``, run it, check it."""
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    write_files(repo, case.files)
    args = [a.replace("{repo}", str(repo)) for a in case.args]
    outcome = run_fleetgate(args, cwd=tmp_path, env=case.env)
    check_outcome(case, outcome)
    return outcome
