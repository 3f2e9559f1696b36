"""The agent's configuration (DESIGN.md §3): a YAML file, the environment, flags.

Every key of ``agent.yaml`` (see ``reconciler/schemas/agent.schema.json``) can also be
set as ``FLEETGATE_<UPPER_SNAKE>`` (``stateDir`` → ``FLEETGATE_STATE_DIR``) and as a flag
``--kebab-case`` (``--state-dir``). Flags win over the environment, which wins over the
file. The default file ``/etc/fleetgate/agent.yaml`` may be missing; an explicit
``--config`` that does not exist is an error.

Values from the environment and flags are strings: ``watch`` is a comma-separated list
(the flag may also be repeated), ``policy`` is an inline YAML/JSON mapping,
``repairDrift`` and ``allowRewind`` are ``true``/``false``. ``watch`` needs
``allowedSigners`` (bundles are imported only when signed). Every mistake is one
:class:`UsageError` line naming the file and line (or the variable / flag) and what to
write instead; the command line turns it into exit code 2.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.errors import Finding, ManifestError, UsageError
from reconciler.manifests.policy import parse_policy
from reconciler.manifests.schema import schema_findings
from reconciler.manifests.yamlio import LineDict, parse_yaml
from reconciler.model import Location, Policy
from reconciler.redaction import redact_url
from reconciler.report.broker import DEFAULT_INTERVAL, DEFAULT_TOPIC, Broker, report_config
from reconciler.report.http_config import DEFAULT_STATUS_LISTEN, check_listen, read_token
from reconciler.units import parse_duration

DEFAULT_CONFIG = Path("/etc/fleetgate/agent.yaml")
DEFAULT_STATE_DIR = Path("/var/lib/fleetgate")
ENV_PREFIX = "FLEETGATE_"

KEYS: tuple[str, ...] = (
    "device",
    "repo",
    "ref",
    "pollInterval",
    "stateDir",
    "allowedSigners",
    "statusListen",
    "statusTokenFile",
    "watch",
    "dockerHost",
    "policy",
    "healthTimeout",
    "maxDefer",
    "repairDrift",
    "resyncInterval",
    "maxBackoff",
    "sourceTimeout",
    "allowRewind",
    # fleet reporting (DESIGN.md §6; reconciler/report/)
    "report",
    "reportUsername",
    "reportPasswordFile",
    "reportCA",
    "reportTopic",
    "reportInterval",
)
"""Every configuration key, in the order ``--help`` shows them."""

HELP: Mapping[str, str] = {
    "device": "device id (default: the host name)",
    "repo": "fleet repository: Git URL or local path (required)",
    "ref": "branch, tag or commit to track (default: the remote HEAD)",
    "pollInterval": "how often to check the source, ±10%% jitter (default 60s)",
    "stateDir": f"state directory (default {DEFAULT_STATE_DIR})",
    "allowedSigners": "allowed signers file: apply only commits signed by these keys",
    "statusListen": f"address of /status, /metrics, /healthz (default {DEFAULT_STATUS_LISTEN})",
    "statusTokenFile": "file holding the token POST /reconcile must send as "
    "Authorization: Bearer (mode 0600)",
    "watch": "folder to import bundles from (repeat, or comma-separated)",
    "dockerHost": "Docker engine URL (default: DOCKER_HOST or the local socket)",
    "policy": "local policy as an inline YAML mapping; can only narrow the fleet's",
    "healthTimeout": "health gate timeout (default: each stack's healthTimeout)",
    "maxDefer": "longest an application's update lock may hold an update (default 4h)",
    "repairDrift": "repair drift to the applied revision at any time: true|false (default true)",
    "resyncInterval": "longest time between two full engine observations (default 5m)",
    "maxBackoff": "cap of the retry backoff after source or engine errors (default 5m)",
    "sourceTimeout": "timeout of one git operation (default 60s)",
    "allowRewind": "accept the tracked ref moving backwards or to another history: "
    "true|false (default false)",
    "report": "MQTT broker to report status to: mqtt://HOST:1883 or mqtts://HOST:8883",
    "reportUsername": "MQTT user name (usually the device id)",
    "reportPasswordFile": "file holding the MQTT password (never logged)",
    "reportCA": "CA file for mqtts:// (default: the system CAs)",
    "reportTopic": "MQTT topic prefix (default fleetgate)",
    "reportInterval": "longest time between two status reports (default 5m)",
}

_DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_DURATIONS = (
    "pollInterval",
    "healthTimeout",
    "maxDefer",
    "resyncInterval",
    "maxBackoff",
    "reportInterval",
)
_DURATIONS_ALL = (*_DURATIONS, "sourceTimeout")
_BOOLEANS = ("repairDrift", "allowRewind")


def env_name(key: str) -> str:
    """``stateDir`` → ``FLEETGATE_STATE_DIR``."""
    return ENV_PREFIX + re.sub(r"(?<!^)(?=[A-Z])", "_", key).upper()


def flag_name(key: str) -> str:
    """``stateDir`` → ``--state-dir``."""
    return "--" + re.sub(r"(?<!^)(?=[A-Z])", "-", key).lower()


def dest_name(key: str) -> str:
    """``stateDir`` → ``state_dir`` (the argparse destination of the flag)."""
    return flag_name(key)[2:].replace("-", "_")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """The resolved configuration of one agent (durations in seconds)."""

    device: str
    repo: str
    ref: str | None = None
    poll_interval: float = 60.0
    state_dir: Path = DEFAULT_STATE_DIR
    allowed_signers: Path | None = None
    status_listen: str = DEFAULT_STATUS_LISTEN
    status_token_file: Path | None = None
    status_token: str | None = field(default=None, repr=False)  # never shown
    watch: tuple[Path, ...] = ()
    docker_host: str | None = None
    policy: Policy | None = None
    health_timeout: float | None = None
    max_defer: float = 4 * 3600.0
    repair_drift: bool = True
    resync_interval: float = 300.0
    max_backoff: float = 300.0
    source_timeout: float = 60.0
    allow_rewind: bool = False
    report: Broker | None = None  # fleet reporting over MQTT (credentials resolved)
    report_topic: str = DEFAULT_TOPIC
    report_interval: float = DEFAULT_INTERVAL

    @property
    def cache_dir(self) -> Path:
        """Mirrors and checkouts of the fleet repository (shared with ``plan``/``apply``)."""
        return self.state_dir / "cache"

    @property
    def device_dir(self) -> Path:
        return self.state_dir / "devices" / self.device

    @property
    def lock_root(self) -> Path:
        """``{state}/locks/{device}``: one folder per stack, ``updates.lock`` inside."""
        return self.state_dir / "locks" / self.device


@dataclass(frozen=True, slots=True)
class _Value:
    """One raw value and where it came from (for the error line)."""

    value: Any
    where: str


def load_config(
    config: str | None,
    env: Mapping[str, str],
    flags: Mapping[str, Any],
    *,
    hostname: str | None = None,
) -> AgentConfig:
    """Merge file, environment and flags (flags win) into a validated :class:`AgentConfig`.

    ``config`` is the ``--config`` value (``None``: the default file, which may be
    missing). ``flags`` maps configuration keys (camelCase) to the strings given on the
    command line (``None`` or absent: not given; ``watch`` may be a list). Raises
    :class:`UsageError` (one line) on any mistake.
    """
    merged: dict[str, _Value] = {}
    for key, value in _read_file(config).items():
        merged[key] = value
    for key in KEYS:
        name = env_name(key)
        if env.get(name, "") != "":
            merged[key] = _Value(_from_text(key, env[name], name), name)
    for key in KEYS:
        given = flags.get(key)
        if given is not None and given != []:
            name = flag_name(key)
            if isinstance(given, list):
                given = ",".join(str(g) for g in given)
            merged[key] = _Value(_from_text(key, str(given), name), name)
    return _resolve(merged, hostname)


def _read_file(config: str | None) -> dict[str, _Value]:
    path = DEFAULT_CONFIG if config is None else Path(config)
    shown = str(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        if config is None:
            return {}
        raise UsageError(f"{shown}: no such configuration file (--config)") from None
    except OSError as e:
        raise UsageError(f"{shown}: cannot read: {e.strerror}") from None
    try:
        document = parse_yaml(text, shown)
    except ManifestError as e:
        raise UsageError(str(e.findings[0]) if e.findings else f"{shown}: invalid YAML") from None
    if document is None:
        return {}
    findings = schema_findings("agent", document, shown)
    if findings:
        raise UsageError(_every(findings))
    assert isinstance(document, LineDict)  # the schema requires a mapping
    return {
        str(key): _Value(value, f"{shown}:{document.line_of(str(key))}")
        for key, value in document.items()
    }


def _every(findings: Sequence[Finding]) -> str:
    """Every problem of the configuration, one line each (fix them all in one go)."""
    return "\n".join(str(f) for f in sorted(findings))


def _from_text(key: str, text: str, where: str) -> Any:
    """A string from the environment or a flag as the value the file would hold."""
    if key == "watch":
        return [part.strip() for part in text.split(",") if part.strip()]
    if key in _BOOLEANS:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise UsageError(f"{where}: {text!r} is not true or false")
    if key == "policy":
        try:
            return parse_yaml(text, where)
        except ManifestError as e:
            raise UsageError(f"{where}: not a YAML mapping: {e}") from None
    return text


def _resolve(values: Mapping[str, _Value], hostname: str | None) -> AgentConfig:
    def get(key: str) -> _Value | None:
        return values.get(key)

    device_v = get("device")
    device = str(device_v.value) if device_v else _host_device(hostname)
    if not _DEVICE_ID.match(device):
        where = device_v.where if device_v else "the host name"
        raise UsageError(
            f"{where}: device {device!r} is not a device id ([a-z0-9][a-z0-9-]{{0,62}}); "
            "set device in the configuration"
        )
    repo_v = get("repo")
    if repo_v is None or not str(repo_v.value).strip():
        raise UsageError(
            f"no fleet repository configured; set repo in the configuration file, "
            f"{env_name('repo')} or {flag_name('repo')}"
        )
    durations: dict[str, float] = {}
    for key in _DURATIONS_ALL:
        value = get(key)
        if value is None:
            continue
        try:
            seconds = parse_duration(value.value)
        except ValueError as e:
            raise UsageError(f"{value.where}: {key}: {e}") from None
        if seconds <= 0:
            raise UsageError(f"{value.where}: {key} must be longer than 0s")
        durations[key] = seconds
    listen = get("statusListen")
    if listen is not None:
        check_listen(str(listen.value), listen.where)
    token_file = get("statusTokenFile")
    token = (
        None if token_file is None else read_token(Path(str(token_file.value)), token_file.where)
    )
    policy = _policy(get("policy"))
    watch = get("watch")
    state = get("stateDir")
    signers = get("allowedSigners")
    ref, docker_host, repair = get("ref"), get("dockerHost"), get("repairDrift")
    rewind = get("allowRewind")
    if watch is not None and watch.value and signers is None:
        raise UsageError(
            f"{watch.where}: watch folders import signed bundles only; set allowedSigners "
            "(an OpenSSH allowed signers file) as well"
        )
    broker, topic = report_config({k: (v.value, v.where) for k, v in values.items()})
    return AgentConfig(
        device=device,
        repo=str(repo_v.value).strip(),
        ref=None if ref is None else str(ref.value),
        poll_interval=durations.get("pollInterval", 60.0),
        state_dir=DEFAULT_STATE_DIR if state is None else Path(str(state.value)),
        allowed_signers=None if signers is None else Path(str(signers.value)),
        status_listen=DEFAULT_STATUS_LISTEN if listen is None else str(listen.value),
        status_token_file=None if token_file is None else Path(str(token_file.value)),
        status_token=token,
        watch=() if watch is None else tuple(Path(str(w)) for w in watch.value),
        docker_host=None if docker_host is None else str(docker_host.value),
        policy=policy,
        health_timeout=durations.get("healthTimeout"),
        max_defer=durations.get("maxDefer", 4 * 3600.0),
        repair_drift=True if repair is None else bool(repair.value),
        resync_interval=durations.get("resyncInterval", 300.0),
        max_backoff=durations.get("maxBackoff", 300.0),
        source_timeout=durations.get("sourceTimeout", 60.0),
        allow_rewind=False if rewind is None else bool(rewind.value),
        report=broker,
        report_topic=topic,
        report_interval=durations.get("reportInterval", DEFAULT_INTERVAL),
    )


def config_warnings(config: AgentConfig) -> tuple[str, ...]:
    """What the agent must say loudly about its configuration (DESIGN.md §2 rule 8).

    Each warning starts with a stable code and a colon. Today one:
    ``unsigned-and-unrestricted``: no ``allowedSigners`` and no local ``policy``, so
    whoever can push to the repository may run what the fleet policy allows.
    """
    if config.allowed_signers is not None or config.policy is not None:
        return ()
    return (
        f"{UNSIGNED_AND_UNRESTRICTED}: no allowedSigners and no local policy: whoever can "
        f"push to {redact_url(config.repo)} may run what the fleet policy allows",
    )


UNSIGNED_AND_UNRESTRICTED = "unsigned-and-unrestricted"


def _policy(value: _Value | None) -> Policy | None:
    if value is None:
        return None
    path, _, line = value.where.rpartition(":")
    location = Location(path, int(line)) if line.isdigit() else Location(value.where)
    policy, findings = parse_policy(value.value, location)
    if findings:
        raise UsageError(_every(findings))
    return policy


def _host_device(hostname: str | None) -> str:
    """The host name as a device id: lower case, the first label of a dotted name."""
    name = hostname if hostname is not None else socket.gethostname()
    return name.split(".", 1)[0].lower()


def environment() -> Mapping[str, str]:
    """The process environment (the composition root passes it to :func:`load_config`)."""
    return os.environ
