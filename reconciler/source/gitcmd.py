"""Running git: the one place a git process is started.

Every git call in :mod:`reconciler.source` goes through :func:`run_git`: killed after
its timeout, never prompting, hooks and the ``ext::`` transport off, credentials
handed over through the environment (never argv or disk), and git's stderr redacted
(:mod:`reconciler.redaction`).

It runs git with :mod:`subprocess` rather than GitPython: the agent calls git every
poll, and GitPython held ~2-3 MB of the idle agent's memory for a ``Popen`` wrapper.
The contract GitPython gave is kept: ``LANGUAGE`` / ``LC_ALL`` = ``C`` (English
messages, parsed below), stdin from ``/dev/null``, one trailing newline stripped from
stdout and stderr, and on timeout git *and its children* (``ssh``, remote helpers)
killed, stderr then starting with ``Timeout:``.
"""

from __future__ import annotations

import contextlib
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
    status, out, err = _execute(command, cwd, _environment(extra, timeout), timeout)
    elapsed = time.monotonic() - started
    err_text = err.decode("utf-8", "replace")
    out_text = out.decode("utf-8", "replace")
    timed_out = status != 0 and (err_text.startswith("Timeout:") or elapsed >= timeout)
    handed = {v for k, v in extra.items() if k.startswith("FLEETGATE_GIT_")}
    secrets = text_secrets(args) | {v for v in handed if len(v) >= MIN_SECRET_LENGTH}
    return GitResult(status, out_text, redact(err_text, secrets), timed_out)


def _execute(
    command: list[str], cwd: Path | None, env: Mapping[str, str], timeout: float
) -> tuple[int, bytes, bytes]:
    """Run ``command``; (exit status, stdout, stderr), one trailing newline stripped.

    git runs in a session of its own, so a timeout kills its whole process group
    (``ssh``, ``git-remote-http``, ``index-pack``), not only git.
    """
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd if cwd is not None and os.access(cwd, os.X_OK) else None,
            env={**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        why = "git is not installed; install it (Debian: apt-get install git)"
        raise SourceError(why) from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
        err = f"Timeout: git did not complete in {timeout:g} secs.".encode()
    except BaseException:  # Ctrl-C, a stop: git is in its own session, take it along
        _kill_group(proc)
        proc.wait()
        raise
    return proc.returncode, out.removesuffix(b"\n"), err.removesuffix(b"\n")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended by itself meanwhile
        os.killpg(proc.pid, signal.SIGKILL)


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
