"""Running git: the one place a git process is started.

Every git call in :mod:`reconciler.source` goes through :func:`run_git`: killed after
its timeout, never prompting, hooks and the ``ext::`` transport off, credentials
handed over through the environment (never argv or disk), and git's stderr redacted
(:mod:`reconciler.redaction`). Git runs as a plain subprocess in its own process
group, killed as a group at the timeout (helpers such as ``git-remote-http`` or
``ssh`` included); GitPython is not used: importing it cost more than a no-change
``fleetgate apply`` does otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import SourceError
from reconciler.redaction import MIN_SECRET_LENGTH, redact, text_secrets

_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; printf "username=%s\\npassword=%s\\n" '
    '"$FLEETGATE_GIT_USERNAME" "$FLEETGATE_GIT_PASSWORD"; }; f'
)
"""Hands the URL's credentials (from the environment) to git without argv or disk."""


# --------------------------------------------------------------------- running git


@dataclass(frozen=True, slots=True)
class GitResult:
    status: int
    stdout: str
    stderr: str
    timed_out: bool


def _environment(extra: Mapping[str, str], timeout: float) -> dict[str, str]:
    env = {
        **os.environ,
        "LANGUAGE": "C",  # git's messages in English: reason() reads them
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        "GIT_SSH_COMMAND": (
            f"ssh -o BatchMode=yes -o ConnectTimeout={max(1, int(timeout))} "
            "-o StrictHostKeyChecking=accept-new"
        ),
        "GIT_CONFIG_NOSYSTEM": "1",
        "FLEETGATE_GIT_USERNAME": "",
        "FLEETGATE_GIT_PASSWORD": "",
    }
    env.update(extra)
    return env


def run_git(
    args: Sequence[str],
    *,
    cwd: Path | None,
    timeout: float,
    env: Mapping[str, str] | None = None,
    git_dir: Path | None = None,
) -> GitResult:
    """Run one git command, killed after ``timeout`` seconds; never raises on failure.

    Its stderr comes back redacted: without the credentials of any URL among ``args``
    (git prints them in many forms, e.g. ``unable to look up user:pw@host``) nor the
    ones handed over in ``env``.
    """
    extra = dict(env or {})
    if git_dir is not None:
        extra["GIT_DIR"] = str(git_dir)
    command = [
        "git",
        "-c",
        "credential.helper=",
        "-c",
        f"credential.helper={_CREDENTIAL_HELPER}",
        "-c",
        "http.lowSpeedLimit=1",
        "-c",
        f"http.lowSpeedTime={max(1, int(timeout))}",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "protocol.ext.allow=never",
        *args,
    ]
    started = time.monotonic()
    status, out, err, killed = _execute(command, cwd, _environment(extra, timeout), timeout)
    elapsed = time.monotonic() - started
    err_text = _text(err)
    out_text = _text(out)
    timed_out = killed or (status != 0 and elapsed >= timeout)
    handed = {v for k, v in extra.items() if k.startswith("FLEETGATE_GIT_")}
    secrets = text_secrets(args) | {v for v in handed if len(v) >= MIN_SECRET_LENGTH}
    return GitResult(int(status or 0), out_text, redact(err_text, secrets), timed_out)


def _execute(
    command: list[str], cwd: Path | None, env: dict[str, str], timeout: float
) -> tuple[int, bytes, bytes, bool]:
    """(exit status, stdout, stderr, killed at the timeout) of ``command``."""
    try:
        proc = subprocess.Popen(  # argv, never a shell
            command,
            cwd=str(cwd) if cwd else None,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own group: the timeout kills helpers too
        )
    except FileNotFoundError:
        raise SourceError(
            "git is not installed; install it (Debian: apt-get install git)"
        ) from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        out, err = proc.communicate()
        return proc.returncode or -9, out, err, True
    except BaseException:  # Ctrl-C, a stopping agent: never leave git running
        _kill(proc)
        proc.communicate()
        raise
    return proc.returncode, out, err, False


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _text(raw: bytes) -> str:
    """Decoded output without its one trailing newline (as git's callers expect)."""
    text = raw.decode("utf-8", "replace")
    return text[:-1] if text.endswith("\n") else text


_BOILERPLATE = (
    "fatal: could not read from remote repository.",
    "please make sure you have the correct access rights",
    "and the repository exists.",
)


def reason(result: GitResult, timeout: float) -> str:
    """The one line of git's complaint that tells the user what went wrong.

    Skips git's generic trailer ("Could not read from remote repository ...") in
    favour of the specific line before it, and joins a ``fatal: ...:`` line with
    the detail git prints on the next line.
    """
    if result.timed_out:
        return f"timed out after {timeout:g}s"
    lines = [
        line.strip()
        for line in result.stderr.splitlines()
        if line.strip() and line.strip().lower() not in _BOILERPLATE
    ]
    for i, line in enumerate(lines):
        head, _, rest = line.partition(":")
        if head.lower() in ("fatal", "error"):
            text = rest.strip()
            if text.endswith(":") and i + 1 < len(lines):
                text = f"{text} {lines[i + 1]}"
            return text
    return lines[-1] if lines else f"git exited with status {result.status}"


def check(result: GitResult, what: str, timeout: float) -> str:
    if result.status != 0:
        raise SourceError(f"{what}: {reason(result, timeout)}")
    return result.stdout
